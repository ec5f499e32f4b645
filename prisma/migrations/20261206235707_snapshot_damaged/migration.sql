-- AlterEnum
ALTER TYPE "AlertType" ADD VALUE 'PACK_DAMAGED';

-- AlterEnum
ALTER TYPE "CopyStatus" ADD VALUE 'DAMAGED';

-- AlterEnum
ALTER TYPE "SnapshotStatus" ADD VALUE 'DAMAGED';
