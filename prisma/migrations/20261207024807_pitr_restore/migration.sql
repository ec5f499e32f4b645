-- AlterTable
ALTER TABLE "environments" ADD COLUMN     "previousDatabaseName" TEXT;

-- AlterTable
ALTER TABLE "restore_logs" ADD COLUMN     "cloneDatabaseName" TEXT,
ADD COLUMN     "pointInTime" TIMESTAMP(3),
ADD COLUMN     "recoveredFrom" TEXT,
ALTER COLUMN "snapshotId" DROP NOT NULL;
