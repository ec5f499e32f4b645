-- CreateEnum
CREATE TYPE "PitrGapReason" AS ENUM ('MISSING_WAL', 'SLOT_DROPPED', 'TIMELINE_SWITCH');

-- AlterEnum
-- This migration adds more than one value to an enum.
-- With PostgreSQL versions 11 and earlier, this is not possible
-- in a single migration. This can be worked around by creating
-- multiple migrations, each migration adding only one value to
-- the enum.


ALTER TYPE "AlertType" ADD VALUE 'PITR_LAGGING';
ALTER TYPE "AlertType" ADD VALUE 'PITR_SLOT_DROPPED';
ALTER TYPE "AlertType" ADD VALUE 'PITR_SLOT_RETAINING';
ALTER TYPE "AlertType" ADD VALUE 'PITR_GAP';
ALTER TYPE "AlertType" ADD VALUE 'BASE_BACKUP_FAILED';

-- AlterEnum
ALTER TYPE "OperationType" ADD VALUE 'BASE_BACKUP';

-- AlterTable
ALTER TABLE "environments" ADD COLUMN     "baseBackupCron" TEXT NOT NULL DEFAULT '0 3 * * *',
ADD COLUMN     "pitrClusterId" TEXT,
ADD COLUMN     "walArchiveIntervalSeconds" INTEGER NOT NULL DEFAULT 60,
ADD COLUMN     "walEnabled" BOOLEAN NOT NULL DEFAULT false,
ADD COLUMN     "walRetentionDays" INTEGER;

-- CreateTable
CREATE TABLE "pitr_clusters" (
    "id" TEXT NOT NULL,
    "systemIdentifier" TEXT NOT NULL,
    "slotName" TEXT NOT NULL,
    "timeline" INTEGER NOT NULL DEFAULT 1,
    "walSegmentSize" INTEGER NOT NULL DEFAULT 16777216,
    "leaseOwner" TEXT,
    "leaseExpiresAt" TIMESTAMP(3),
    "coveredUntil" TIMESTAMP(3),
    "lastArchivedAt" TIMESTAMP(3),
    "lastArchivedLsn" TEXT,
    "slotDroppedAt" TIMESTAMP(3),
    "lastBaseBackupAt" TIMESTAMP(3),
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "pitr_clusters_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "base_backups" (
    "id" TEXT NOT NULL,
    "clusterId" TEXT NOT NULL,
    "operationId" TEXT,
    "status" "SnapshotStatus" NOT NULL DEFAULT 'CREATING',
    "error" TEXT,
    "timeline" INTEGER,
    "startLsn" TEXT,
    "endLsn" TEXT,
    "startWal" TEXT,
    "endWal" TEXT,
    "sizeBytes" BIGINT NOT NULL DEFAULT 0,
    "addedBytes" BIGINT NOT NULL DEFAULT 0,
    "copies" JSONB NOT NULL DEFAULT '[]',
    "startedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "finishedAt" TIMESTAMP(3),

    CONSTRAINT "base_backups_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "wal_uploads" (
    "id" TEXT NOT NULL,
    "clusterId" TEXT NOT NULL,
    "destinationId" TEXT NOT NULL,
    "repoSnapshotId" TEXT NOT NULL,
    "files" TEXT[],
    "timeline" INTEGER NOT NULL,
    "startLsn" TEXT,
    "endLsn" TEXT,
    "bytes" BIGINT NOT NULL DEFAULT 0,
    "addedBytes" BIGINT NOT NULL DEFAULT 0,
    "coversUntil" TIMESTAMP(3) NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "wal_uploads_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "pitr_gaps" (
    "id" TEXT NOT NULL,
    "clusterId" TEXT NOT NULL,
    "reason" "PitrGapReason" NOT NULL,
    "fromTime" TIMESTAMP(3) NOT NULL,
    "toTime" TIMESTAMP(3),
    "detail" TEXT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "pitr_gaps_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "pitr_clusters_systemIdentifier_key" ON "pitr_clusters"("systemIdentifier");

-- CreateIndex
CREATE UNIQUE INDEX "base_backups_operationId_key" ON "base_backups"("operationId");

-- CreateIndex
CREATE INDEX "base_backups_clusterId_startedAt_idx" ON "base_backups"("clusterId", "startedAt");

-- CreateIndex
CREATE INDEX "wal_uploads_clusterId_createdAt_idx" ON "wal_uploads"("clusterId", "createdAt");

-- CreateIndex
CREATE INDEX "wal_uploads_clusterId_destinationId_createdAt_idx" ON "wal_uploads"("clusterId", "destinationId", "createdAt");

-- CreateIndex
CREATE INDEX "pitr_gaps_clusterId_fromTime_idx" ON "pitr_gaps"("clusterId", "fromTime");

-- AddForeignKey
ALTER TABLE "environments" ADD CONSTRAINT "environments_pitrClusterId_fkey" FOREIGN KEY ("pitrClusterId") REFERENCES "pitr_clusters"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "base_backups" ADD CONSTRAINT "base_backups_clusterId_fkey" FOREIGN KEY ("clusterId") REFERENCES "pitr_clusters"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "wal_uploads" ADD CONSTRAINT "wal_uploads_clusterId_fkey" FOREIGN KEY ("clusterId") REFERENCES "pitr_clusters"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "pitr_gaps" ADD CONSTRAINT "pitr_gaps_clusterId_fkey" FOREIGN KEY ("clusterId") REFERENCES "pitr_clusters"("id") ON DELETE CASCADE ON UPDATE CASCADE;
