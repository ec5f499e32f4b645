-- CreateTable
CREATE TABLE "pitr_timeline_switches" (
    "id" TEXT NOT NULL,
    "clusterId" TEXT NOT NULL,
    "timeline" INTEGER NOT NULL,
    "parentTimeline" INTEGER NOT NULL,
    "switchLsn" TEXT NOT NULL,
    "seenAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "pitr_timeline_switches_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "pitr_timeline_switches_clusterId_timeline_key" ON "pitr_timeline_switches"("clusterId", "timeline");

-- AddForeignKey
ALTER TABLE "pitr_timeline_switches" ADD CONSTRAINT "pitr_timeline_switches_clusterId_fkey" FOREIGN KEY ("clusterId") REFERENCES "pitr_clusters"("id") ON DELETE CASCADE ON UPDATE CASCADE;
