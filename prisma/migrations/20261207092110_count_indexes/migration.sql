-- CreateIndex
CREATE INDEX "operations_environmentId_organizationId_idx" ON "operations"("environmentId", "organizationId");

-- CreateIndex
CREATE INDEX "snapshots_environmentId_organizationId_status_idx" ON "snapshots"("environmentId", "organizationId", "status");
