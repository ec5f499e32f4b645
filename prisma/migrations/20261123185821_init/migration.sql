-- CreateEnum
CREATE TYPE "EnvironmentType" AS ENUM ('PRODUCTION', 'STAGING', 'DEVELOPMENT', 'PREVIEW', 'OTHER');

-- CreateEnum
CREATE TYPE "DestinationProvider" AS ENUM ('LOCAL', 'S3', 'R2', 'B2', 'MINIO', 'CUSTOM');

-- CreateEnum
CREATE TYPE "DestinationStatus" AS ENUM ('UNKNOWN', 'HEALTHY', 'UNREACHABLE');

-- CreateEnum
CREATE TYPE "SnapshotKind" AS ENUM ('MANUAL', 'SCHEDULED', 'PRE_DEPLOY', 'SAFETY');

-- CreateEnum
CREATE TYPE "SnapshotInclude" AS ENUM ('DB', 'FILES');

-- CreateEnum
CREATE TYPE "SnapshotStatus" AS ENUM ('CREATING', 'READY', 'FAILED', 'DELETING', 'DELETED');

-- CreateEnum
CREATE TYPE "CopyStatus" AS ENUM ('PENDING', 'UPLOADING', 'READY', 'FAILED', 'DELETING', 'DELETED');

-- CreateEnum
CREATE TYPE "OperationType" AS ENUM ('SNAPSHOT', 'RESTORE', 'DELETE_SNAPSHOT', 'COPY_SNAPSHOT', 'VERIFY_SNAPSHOT', 'RETENTION');

-- CreateEnum
CREATE TYPE "OperationStatus" AS ENUM ('QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED');

-- CreateEnum
CREATE TYPE "RestoreStrategy" AS ENUM ('SWAP', 'IN_PLACE');

-- CreateEnum
CREATE TYPE "FailurePolicy" AS ENUM ('ALERT_ONLY', 'RETRY', 'PAUSE_SCHEDULE');

-- CreateEnum
CREATE TYPE "AlertSeverity" AS ENUM ('INFO', 'WARNING', 'CRITICAL');

-- CreateEnum
CREATE TYPE "AlertType" AS ENUM ('SNAPSHOT_FAILED', 'RESTORE_FAILED', 'SCHEDULE_MISSED', 'DESTINATION_UNREACHABLE', 'VERIFICATION_FAILED', 'RETENTION_DELETED', 'SNAPSHOT_STALE', 'COPY_FAILED');

-- CreateEnum
CREATE TYPE "ApiScope" AS ENUM ('BACKUPS_READ', 'BACKUPS_WRITE', 'ADMIN');

-- CreateEnum
CREATE TYPE "BlobType" AS ENUM ('DATA', 'TREE');

-- CreateEnum
CREATE TYPE "WebhookDeliveryStatus" AS ENUM ('PENDING', 'SUCCEEDED', 'FAILED');

-- CreateTable
CREATE TABLE "organizations" (
    "id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "organizations_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "projects" (
    "id" TEXT NOT NULL,
    "organizationId" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "description" TEXT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "projects_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "environments" (
    "id" TEXT NOT NULL,
    "organizationId" TEXT NOT NULL,
    "projectId" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "type" "EnvironmentType" NOT NULL DEFAULT 'DEVELOPMENT',
    "databaseUrlEncrypted" TEXT NOT NULL,
    "databaseUrlRedacted" TEXT NOT NULL,
    "databaseName" TEXT NOT NULL,
    "filesPath" TEXT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "environments_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "environment_settings" (
    "environmentId" TEXT NOT NULL,
    "autoEnabled" BOOLEAN NOT NULL DEFAULT true,
    "failurePolicy" "FailurePolicy" NOT NULL DEFAULT 'ALERT_ONLY',
    "retryCount" INTEGER NOT NULL DEFAULT 3,
    "retryBackoffSeconds" INTEGER NOT NULL DEFAULT 60,
    "maxPinned" INTEGER NOT NULL DEFAULT 10,
    "retentionDays" INTEGER,
    "safetyRetentionDays" INTEGER NOT NULL DEFAULT 7,
    "timeoutSeconds" INTEGER NOT NULL DEFAULT 3600,
    "staleAfterHours" INTEGER,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "environment_settings_pkey" PRIMARY KEY ("environmentId")
);

-- CreateTable
CREATE TABLE "environment_destinations" (
    "environmentId" TEXT NOT NULL,
    "destinationId" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "environment_destinations_pkey" PRIMARY KEY ("environmentId","destinationId")
);

-- CreateTable
CREATE TABLE "destinations" (
    "id" TEXT NOT NULL,
    "organizationId" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "provider" "DestinationProvider" NOT NULL,
    "config" JSONB NOT NULL,
    "credentialsEncrypted" TEXT,
    "credentialsRedacted" JSONB,
    "repositoryPasswordEncrypted" TEXT,
    "repositoryId" TEXT,
    "status" "DestinationStatus" NOT NULL DEFAULT 'UNKNOWN',
    "lastCheckedAt" TIMESTAMP(3),
    "lastError" TEXT,
    "verifyCron" TEXT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "destinations_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "packs" (
    "destinationId" TEXT NOT NULL,
    "packId" TEXT NOT NULL,
    "sizeBytes" BIGINT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "packs_pkey" PRIMARY KEY ("destinationId","packId")
);

-- CreateTable
CREATE TABLE "blobs" (
    "destinationId" TEXT NOT NULL,
    "blobId" TEXT NOT NULL,
    "type" "BlobType" NOT NULL,
    "packId" TEXT NOT NULL,
    "offset" INTEGER NOT NULL,
    "length" INTEGER NOT NULL,
    "uncompressedLength" INTEGER,

    CONSTRAINT "blobs_pkey" PRIMARY KEY ("destinationId","blobId")
);

-- CreateTable
CREATE TABLE "snapshots" (
    "id" TEXT NOT NULL,
    "organizationId" TEXT NOT NULL,
    "projectId" TEXT NOT NULL,
    "environmentId" TEXT NOT NULL,
    "kind" "SnapshotKind" NOT NULL DEFAULT 'MANUAL',
    "includes" "SnapshotInclude"[],
    "label" TEXT,
    "status" "SnapshotStatus" NOT NULL DEFAULT 'CREATING',
    "error" TEXT,
    "sizeBytes" BIGINT NOT NULL DEFAULT 0,
    "addedBytes" BIGINT NOT NULL DEFAULT 0,
    "fileCount" INTEGER NOT NULL DEFAULT 0,
    "databaseSizeBytes" BIGINT,
    "durationMs" INTEGER,
    "metadata" JSONB,
    "pinned" BOOLEAN NOT NULL DEFAULT false,
    "pinLabel" TEXT,
    "pinnedAt" TIMESTAMP(3),
    "expiresAt" TIMESTAMP(3),
    "scheduleId" TEXT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "completedAt" TIMESTAMP(3),

    CONSTRAINT "snapshots_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "snapshot_copies" (
    "id" TEXT NOT NULL,
    "snapshotId" TEXT NOT NULL,
    "destinationId" TEXT NOT NULL,
    "status" "CopyStatus" NOT NULL DEFAULT 'PENDING',
    "repoSnapshotId" TEXT,
    "sizeBytes" BIGINT NOT NULL DEFAULT 0,
    "addedBytes" BIGINT NOT NULL DEFAULT 0,
    "error" TEXT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "completedAt" TIMESTAMP(3),

    CONSTRAINT "snapshot_copies_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "operations" (
    "id" TEXT NOT NULL,
    "organizationId" TEXT NOT NULL,
    "environmentId" TEXT,
    "type" "OperationType" NOT NULL,
    "status" "OperationStatus" NOT NULL DEFAULT 'QUEUED',
    "phase" TEXT,
    "bytesDone" BIGINT NOT NULL DEFAULT 0,
    "bytesTotal" BIGINT,
    "message" TEXT,
    "error" TEXT,
    "snapshotId" TEXT,
    "input" JSONB,
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "cancelRequestedAt" TIMESTAMP(3),
    "heartbeatAt" TIMESTAMP(3),
    "startedAt" TIMESTAMP(3),
    "finishedAt" TIMESTAMP(3),
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "operations_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "restore_logs" (
    "id" TEXT NOT NULL,
    "organizationId" TEXT NOT NULL,
    "snapshotId" TEXT NOT NULL,
    "sourceEnvironmentId" TEXT NOT NULL,
    "targetEnvironmentId" TEXT NOT NULL,
    "operationId" TEXT NOT NULL,
    "safetySnapshotId" TEXT,
    "strategy" "RestoreStrategy" NOT NULL DEFAULT 'SWAP',
    "includes" "SnapshotInclude"[],
    "status" "OperationStatus" NOT NULL DEFAULT 'QUEUED',
    "error" TEXT,
    "previousDatabaseName" TEXT,
    "previousExpiresAt" TIMESTAMP(3),
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "completedAt" TIMESTAMP(3),

    CONSTRAINT "restore_logs_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "schedules" (
    "id" TEXT NOT NULL,
    "environmentId" TEXT NOT NULL,
    "dbCron" TEXT,
    "fullCron" TEXT,
    "timezone" TEXT NOT NULL DEFAULT 'UTC',
    "enabled" BOOLEAN NOT NULL DEFAULT true,
    "paused" BOOLEAN NOT NULL DEFAULT false,
    "dbRetention" JSONB NOT NULL,
    "fullRetention" JSONB NOT NULL,
    "nextDbRunAt" TIMESTAMP(3),
    "nextFullRunAt" TIMESTAMP(3),
    "lastDbRunAt" TIMESTAMP(3),
    "lastFullRunAt" TIMESTAMP(3),
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "schedules_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "schedule_destinations" (
    "scheduleId" TEXT NOT NULL,
    "destinationId" TEXT NOT NULL,

    CONSTRAINT "schedule_destinations_pkey" PRIMARY KEY ("scheduleId","destinationId")
);

-- CreateTable
CREATE TABLE "alerts" (
    "id" TEXT NOT NULL,
    "organizationId" TEXT NOT NULL,
    "environmentId" TEXT,
    "operationId" TEXT,
    "type" "AlertType" NOT NULL,
    "severity" "AlertSeverity" NOT NULL,
    "message" TEXT NOT NULL,
    "readAt" TIMESTAMP(3),
    "dismissedAt" TIMESTAMP(3),
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "alerts_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "webhooks" (
    "id" TEXT NOT NULL,
    "organizationId" TEXT NOT NULL,
    "url" TEXT NOT NULL,
    "secretEncrypted" TEXT NOT NULL,
    "enabled" BOOLEAN NOT NULL DEFAULT true,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "webhooks_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "webhook_deliveries" (
    "id" TEXT NOT NULL,
    "webhookId" TEXT NOT NULL,
    "alertId" TEXT NOT NULL,
    "attempt" INTEGER NOT NULL DEFAULT 1,
    "status" "WebhookDeliveryStatus" NOT NULL DEFAULT 'PENDING',
    "responseStatus" INTEGER,
    "error" TEXT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "webhook_deliveries_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "api_keys" (
    "id" TEXT NOT NULL,
    "organizationId" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "prefix" TEXT NOT NULL,
    "secretHash" TEXT NOT NULL,
    "scopes" "ApiScope"[],
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "lastUsedAt" TIMESTAMP(3),
    "expiresAt" TIMESTAMP(3),
    "revokedAt" TIMESTAMP(3),

    CONSTRAINT "api_keys_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "api_key_projects" (
    "apiKeyId" TEXT NOT NULL,
    "projectId" TEXT NOT NULL,

    CONSTRAINT "api_key_projects_pkey" PRIMARY KEY ("apiKeyId","projectId")
);

-- CreateTable
CREATE TABLE "idempotency_keys" (
    "id" TEXT NOT NULL,
    "organizationId" TEXT NOT NULL,
    "key" TEXT NOT NULL,
    "mutation" TEXT NOT NULL,
    "requestHash" TEXT NOT NULL,
    "operationId" TEXT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "expiresAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "idempotency_keys_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "audit_events" (
    "id" TEXT NOT NULL,
    "organizationId" TEXT NOT NULL,
    "apiKeyId" TEXT,
    "action" TEXT NOT NULL,
    "targetId" TEXT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "audit_events_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "projects_organizationId_createdAt_idx" ON "projects"("organizationId", "createdAt");

-- CreateIndex
CREATE UNIQUE INDEX "projects_organizationId_name_key" ON "projects"("organizationId", "name");

-- CreateIndex
CREATE INDEX "environments_organizationId_createdAt_idx" ON "environments"("organizationId", "createdAt");

-- CreateIndex
CREATE UNIQUE INDEX "environments_projectId_name_key" ON "environments"("projectId", "name");

-- CreateIndex
CREATE INDEX "environment_destinations_destinationId_idx" ON "environment_destinations"("destinationId");

-- CreateIndex
CREATE UNIQUE INDEX "destinations_organizationId_name_key" ON "destinations"("organizationId", "name");

-- CreateIndex
CREATE INDEX "blobs_destinationId_packId_idx" ON "blobs"("destinationId", "packId");

-- CreateIndex
CREATE INDEX "snapshots_environmentId_createdAt_id_idx" ON "snapshots"("environmentId", "createdAt" DESC, "id" DESC);

-- CreateIndex
CREATE INDEX "snapshots_projectId_createdAt_id_idx" ON "snapshots"("projectId", "createdAt" DESC, "id" DESC);

-- CreateIndex
CREATE INDEX "snapshots_organizationId_status_idx" ON "snapshots"("organizationId", "status");

-- CreateIndex
CREATE INDEX "snapshots_expiresAt_idx" ON "snapshots"("expiresAt");

-- CreateIndex
CREATE INDEX "snapshot_copies_destinationId_status_idx" ON "snapshot_copies"("destinationId", "status");

-- CreateIndex
CREATE UNIQUE INDEX "snapshot_copies_snapshotId_destinationId_key" ON "snapshot_copies"("snapshotId", "destinationId");

-- CreateIndex
CREATE INDEX "operations_environmentId_createdAt_idx" ON "operations"("environmentId", "createdAt" DESC);

-- CreateIndex
CREATE INDEX "operations_organizationId_status_idx" ON "operations"("organizationId", "status");

-- CreateIndex
CREATE INDEX "restore_logs_snapshotId_createdAt_idx" ON "restore_logs"("snapshotId", "createdAt" DESC);

-- CreateIndex
CREATE INDEX "restore_logs_sourceEnvironmentId_createdAt_idx" ON "restore_logs"("sourceEnvironmentId", "createdAt" DESC);

-- CreateIndex
CREATE INDEX "restore_logs_targetEnvironmentId_createdAt_idx" ON "restore_logs"("targetEnvironmentId", "createdAt" DESC);

-- CreateIndex
CREATE UNIQUE INDEX "schedules_environmentId_key" ON "schedules"("environmentId");

-- CreateIndex
CREATE INDEX "schedule_destinations_destinationId_idx" ON "schedule_destinations"("destinationId");

-- CreateIndex
CREATE INDEX "alerts_organizationId_createdAt_id_idx" ON "alerts"("organizationId", "createdAt" DESC, "id" DESC);

-- CreateIndex
CREATE INDEX "alerts_organizationId_dismissedAt_readAt_idx" ON "alerts"("organizationId", "dismissedAt", "readAt");

-- CreateIndex
CREATE INDEX "webhooks_organizationId_idx" ON "webhooks"("organizationId");

-- CreateIndex
CREATE INDEX "webhook_deliveries_webhookId_createdAt_idx" ON "webhook_deliveries"("webhookId", "createdAt" DESC);

-- CreateIndex
CREATE INDEX "webhook_deliveries_alertId_idx" ON "webhook_deliveries"("alertId");

-- CreateIndex
CREATE UNIQUE INDEX "api_keys_prefix_key" ON "api_keys"("prefix");

-- CreateIndex
CREATE INDEX "api_keys_organizationId_createdAt_idx" ON "api_keys"("organizationId", "createdAt");

-- CreateIndex
CREATE INDEX "api_key_projects_projectId_idx" ON "api_key_projects"("projectId");

-- CreateIndex
CREATE INDEX "idempotency_keys_expiresAt_idx" ON "idempotency_keys"("expiresAt");

-- CreateIndex
CREATE UNIQUE INDEX "idempotency_keys_organizationId_mutation_key_key" ON "idempotency_keys"("organizationId", "mutation", "key");

-- CreateIndex
CREATE INDEX "audit_events_organizationId_createdAt_idx" ON "audit_events"("organizationId", "createdAt" DESC);

-- AddForeignKey
ALTER TABLE "projects" ADD CONSTRAINT "projects_organizationId_fkey" FOREIGN KEY ("organizationId") REFERENCES "organizations"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "environments" ADD CONSTRAINT "environments_organizationId_fkey" FOREIGN KEY ("organizationId") REFERENCES "organizations"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "environments" ADD CONSTRAINT "environments_projectId_fkey" FOREIGN KEY ("projectId") REFERENCES "projects"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "environment_settings" ADD CONSTRAINT "environment_settings_environmentId_fkey" FOREIGN KEY ("environmentId") REFERENCES "environments"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "environment_destinations" ADD CONSTRAINT "environment_destinations_environmentId_fkey" FOREIGN KEY ("environmentId") REFERENCES "environments"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "environment_destinations" ADD CONSTRAINT "environment_destinations_destinationId_fkey" FOREIGN KEY ("destinationId") REFERENCES "destinations"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "destinations" ADD CONSTRAINT "destinations_organizationId_fkey" FOREIGN KEY ("organizationId") REFERENCES "organizations"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "packs" ADD CONSTRAINT "packs_destinationId_fkey" FOREIGN KEY ("destinationId") REFERENCES "destinations"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "blobs" ADD CONSTRAINT "blobs_destinationId_fkey" FOREIGN KEY ("destinationId") REFERENCES "destinations"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "snapshots" ADD CONSTRAINT "snapshots_organizationId_fkey" FOREIGN KEY ("organizationId") REFERENCES "organizations"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "snapshots" ADD CONSTRAINT "snapshots_projectId_fkey" FOREIGN KEY ("projectId") REFERENCES "projects"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "snapshots" ADD CONSTRAINT "snapshots_environmentId_fkey" FOREIGN KEY ("environmentId") REFERENCES "environments"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "snapshots" ADD CONSTRAINT "snapshots_scheduleId_fkey" FOREIGN KEY ("scheduleId") REFERENCES "schedules"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "snapshot_copies" ADD CONSTRAINT "snapshot_copies_snapshotId_fkey" FOREIGN KEY ("snapshotId") REFERENCES "snapshots"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "snapshot_copies" ADD CONSTRAINT "snapshot_copies_destinationId_fkey" FOREIGN KEY ("destinationId") REFERENCES "destinations"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "operations" ADD CONSTRAINT "operations_organizationId_fkey" FOREIGN KEY ("organizationId") REFERENCES "organizations"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "operations" ADD CONSTRAINT "operations_environmentId_fkey" FOREIGN KEY ("environmentId") REFERENCES "environments"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "operations" ADD CONSTRAINT "operations_snapshotId_fkey" FOREIGN KEY ("snapshotId") REFERENCES "snapshots"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "restore_logs" ADD CONSTRAINT "restore_logs_organizationId_fkey" FOREIGN KEY ("organizationId") REFERENCES "organizations"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "restore_logs" ADD CONSTRAINT "restore_logs_snapshotId_fkey" FOREIGN KEY ("snapshotId") REFERENCES "snapshots"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "restore_logs" ADD CONSTRAINT "restore_logs_sourceEnvironmentId_fkey" FOREIGN KEY ("sourceEnvironmentId") REFERENCES "environments"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "restore_logs" ADD CONSTRAINT "restore_logs_targetEnvironmentId_fkey" FOREIGN KEY ("targetEnvironmentId") REFERENCES "environments"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "restore_logs" ADD CONSTRAINT "restore_logs_operationId_fkey" FOREIGN KEY ("operationId") REFERENCES "operations"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "restore_logs" ADD CONSTRAINT "restore_logs_safetySnapshotId_fkey" FOREIGN KEY ("safetySnapshotId") REFERENCES "snapshots"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "schedules" ADD CONSTRAINT "schedules_environmentId_fkey" FOREIGN KEY ("environmentId") REFERENCES "environments"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "schedule_destinations" ADD CONSTRAINT "schedule_destinations_scheduleId_fkey" FOREIGN KEY ("scheduleId") REFERENCES "schedules"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "schedule_destinations" ADD CONSTRAINT "schedule_destinations_destinationId_fkey" FOREIGN KEY ("destinationId") REFERENCES "destinations"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "alerts" ADD CONSTRAINT "alerts_organizationId_fkey" FOREIGN KEY ("organizationId") REFERENCES "organizations"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "alerts" ADD CONSTRAINT "alerts_environmentId_fkey" FOREIGN KEY ("environmentId") REFERENCES "environments"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "alerts" ADD CONSTRAINT "alerts_operationId_fkey" FOREIGN KEY ("operationId") REFERENCES "operations"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "webhooks" ADD CONSTRAINT "webhooks_organizationId_fkey" FOREIGN KEY ("organizationId") REFERENCES "organizations"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "webhook_deliveries" ADD CONSTRAINT "webhook_deliveries_webhookId_fkey" FOREIGN KEY ("webhookId") REFERENCES "webhooks"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "webhook_deliveries" ADD CONSTRAINT "webhook_deliveries_alertId_fkey" FOREIGN KEY ("alertId") REFERENCES "alerts"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "api_keys" ADD CONSTRAINT "api_keys_organizationId_fkey" FOREIGN KEY ("organizationId") REFERENCES "organizations"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "api_key_projects" ADD CONSTRAINT "api_key_projects_apiKeyId_fkey" FOREIGN KEY ("apiKeyId") REFERENCES "api_keys"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "api_key_projects" ADD CONSTRAINT "api_key_projects_projectId_fkey" FOREIGN KEY ("projectId") REFERENCES "projects"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "idempotency_keys" ADD CONSTRAINT "idempotency_keys_operationId_fkey" FOREIGN KEY ("operationId") REFERENCES "operations"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "audit_events" ADD CONSTRAINT "audit_events_organizationId_fkey" FOREIGN KEY ("organizationId") REFERENCES "organizations"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "audit_events" ADD CONSTRAINT "audit_events_apiKeyId_fkey" FOREIGN KEY ("apiKeyId") REFERENCES "api_keys"("id") ON DELETE SET NULL ON UPDATE CASCADE;
