-- AlterTable
ALTER TABLE "wal_uploads" ADD COLUMN     "partialCuts" INTEGER[] DEFAULT ARRAY[]::INTEGER[];
