-- AlterTable
ALTER TABLE "environments" ADD COLUMN     "lockReason" TEXT,
ADD COLUMN     "lockedAt" TIMESTAMP(3),
ADD COLUMN     "lockedBy" TEXT,
ADD COLUMN     "lockedByApiKeyId" TEXT;

-- AlterTable
ALTER TABLE "schedules" ADD COLUMN     "filesCron" TEXT,
ADD COLUMN     "filesRetention" JSONB NOT NULL DEFAULT '{}',
ADD COLUMN     "lastFilesRunAt" TIMESTAMP(3),
ADD COLUMN     "nextFilesRunAt" TIMESTAMP(3);

-- Manual and pre-deploy snapshots now carry the expiry their environment's retentionDays gives
-- them when they are taken; those taken before get theirs here, so every one shows its expiry.
UPDATE "snapshots" AS s
SET "expiresAt" = s."createdAt" + make_interval(days => es."retentionDays")
FROM "environment_settings" AS es
WHERE es."environmentId" = s."environmentId"
  AND es."retentionDays" IS NOT NULL
  AND s."kind" IN ('MANUAL', 'PRE_DEPLOY')
  AND s."expiresAt" IS NULL;
