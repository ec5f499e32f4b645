-- AlterTable
ALTER TABLE "destinations" ADD COLUMN     "isDefault" BOOLEAN NOT NULL DEFAULT false;
