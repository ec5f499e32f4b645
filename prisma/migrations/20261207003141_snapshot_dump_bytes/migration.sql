-- AlterTable
ALTER TABLE "snapshots" ADD COLUMN     "dumpBytes" BIGINT;
