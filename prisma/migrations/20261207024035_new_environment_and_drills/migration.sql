-- CreateEnum
CREATE TYPE "EnvironmentStatus" AS ENUM ('READY', 'PROVISIONING', 'FAILED');

-- AlterEnum
ALTER TYPE "AlertType" ADD VALUE 'DRILL_FAILED';

-- AlterEnum
ALTER TYPE "OperationType" ADD VALUE 'RESTORE_DRILL';

-- AlterTable
ALTER TABLE "environment_settings" ADD COLUMN     "drillCheckQuery" TEXT;

-- AlterTable
ALTER TABLE "environments" ADD COLUMN     "status" "EnvironmentStatus" NOT NULL DEFAULT 'READY';

-- AlterTable
ALTER TABLE "restore_logs" ADD COLUMN     "newEnvironment" BOOLEAN NOT NULL DEFAULT false;

-- AlterTable
ALTER TABLE "schedules" ADD COLUMN     "drillCron" TEXT,
ADD COLUMN     "lastDrillRunAt" TIMESTAMP(3),
ADD COLUMN     "nextDrillRunAt" TIMESTAMP(3);

-- CreateTable
CREATE TABLE "restore_drills" (
    "id" TEXT NOT NULL,
    "organizationId" TEXT NOT NULL,
    "environmentId" TEXT NOT NULL,
    "snapshotId" TEXT,
    "operationId" TEXT NOT NULL,
    "scheduled" BOOLEAN NOT NULL DEFAULT false,
    "status" "OperationStatus" NOT NULL DEFAULT 'QUEUED',
    "checkQuery" TEXT,
    "checkPassed" BOOLEAN,
    "filesExpected" INTEGER,
    "filesFound" INTEGER,
    "bytesExpected" BIGINT,
    "bytesFound" BIGINT,
    "rtoMs" INTEGER,
    "error" TEXT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "completedAt" TIMESTAMP(3),

    CONSTRAINT "restore_drills_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "restore_drills_operationId_key" ON "restore_drills"("operationId");

-- CreateIndex
CREATE INDEX "restore_drills_environmentId_createdAt_idx" ON "restore_drills"("environmentId", "createdAt" DESC);

-- AddForeignKey
ALTER TABLE "restore_drills" ADD CONSTRAINT "restore_drills_organizationId_fkey" FOREIGN KEY ("organizationId") REFERENCES "organizations"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "restore_drills" ADD CONSTRAINT "restore_drills_environmentId_fkey" FOREIGN KEY ("environmentId") REFERENCES "environments"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "restore_drills" ADD CONSTRAINT "restore_drills_snapshotId_fkey" FOREIGN KEY ("snapshotId") REFERENCES "snapshots"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "restore_drills" ADD CONSTRAINT "restore_drills_operationId_fkey" FOREIGN KEY ("operationId") REFERENCES "operations"("id") ON DELETE CASCADE ON UPDATE CASCADE;
