-- AlterEnum
ALTER TYPE "OperationType" ADD VALUE 'IMPORT';

-- AlterEnum
ALTER TYPE "SnapshotKind" ADD VALUE 'IMPORT';

-- AlterTable
ALTER TABLE "operations" ADD COLUMN     "errorCode" TEXT;
