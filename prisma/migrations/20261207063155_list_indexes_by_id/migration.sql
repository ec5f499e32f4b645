-- CreateIndex
CREATE INDEX "operations_environmentId_id_idx" ON "operations"("environmentId", "id" DESC);

-- CreateIndex
CREATE INDEX "snapshots_environmentId_id_idx" ON "snapshots"("environmentId", "id" DESC);

-- CreateIndex
CREATE INDEX "snapshots_projectId_id_idx" ON "snapshots"("projectId", "id" DESC);
