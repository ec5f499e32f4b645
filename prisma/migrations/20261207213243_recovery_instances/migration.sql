-- CreateEnum
CREATE TYPE "RecoveryInstanceStatus" AS ENUM ('STARTING', 'READY', 'STOPPED', 'EXPIRED', 'FAILED', 'LOST');

-- AlterEnum
ALTER TYPE "OperationType" ADD VALUE 'RECOVERY_INSTANCE';

-- CreateTable
CREATE TABLE "recovery_instances" (
    "id" TEXT NOT NULL,
    "organizationId" TEXT NOT NULL,
    "environmentId" TEXT NOT NULL,
    "operationId" TEXT NOT NULL,
    "pointInTime" TIMESTAMP(3) NOT NULL,
    "status" "RecoveryInstanceStatus" NOT NULL DEFAULT 'STARTING',
    "ttlMinutes" INTEGER NOT NULL,
    "host" TEXT,
    "port" INTEGER,
    "error" TEXT,
    "closeRequestedAt" TIMESTAMP(3),
    "leaseOwner" TEXT,
    "leaseExpiresAt" TIMESTAMP(3),
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "readyAt" TIMESTAMP(3),
    "expiresAt" TIMESTAMP(3),
    "stoppedAt" TIMESTAMP(3),

    CONSTRAINT "recovery_instances_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "recovery_instances_operationId_key" ON "recovery_instances"("operationId");

-- CreateIndex
CREATE INDEX "recovery_instances_environmentId_createdAt_idx" ON "recovery_instances"("environmentId", "createdAt" DESC);

-- CreateIndex
CREATE INDEX "recovery_instances_status_idx" ON "recovery_instances"("status");

-- AddForeignKey
ALTER TABLE "recovery_instances" ADD CONSTRAINT "recovery_instances_organizationId_fkey" FOREIGN KEY ("organizationId") REFERENCES "organizations"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "recovery_instances" ADD CONSTRAINT "recovery_instances_environmentId_fkey" FOREIGN KEY ("environmentId") REFERENCES "environments"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "recovery_instances" ADD CONSTRAINT "recovery_instances_operationId_fkey" FOREIGN KEY ("operationId") REFERENCES "operations"("id") ON DELETE CASCADE ON UPDATE CASCADE;
