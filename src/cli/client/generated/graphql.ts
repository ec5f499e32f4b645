/* eslint-disable */
/** Internal type. DO NOT USE DIRECTLY. */
type Exact<T extends { [key: string]: unknown }> = { [K in keyof T]: T[K] };
/** Internal type. DO NOT USE DIRECTLY. */
export type Incremental<T> = T | { [P in keyof T]?: P extends ' $fragmentName' | '__typename' ? T[P] : never };
import type { TypedDocumentNode as DocumentNode } from '@graphql-typed-document-node/core';
export type CreateSnapshotInput = {
  /** Where this snapshot goes; left out or empty: the environment's destinations */
  destinationIds?: Array<string | number> | null | undefined;
  environmentId: string | number;
  /** Same key and input: the same operation back. Also read from the Idempotency-Key header. */
  idempotencyKey?: string | null | undefined;
  /** Default: [DB, FILES] */
  includes?: Array<SnapshotInclude> | null | undefined;
  /** MANUAL (default) or PRE_DEPLOY */
  kind?: SnapshotKind | null | undefined;
  label?: string | null | undefined;
  metadata?: SnapshotMetadataInput | null | undefined;
};

export type DownloadVariant =
  | 'DATABASE_AND_FILES'
  | 'DATABASE_ONLY'
  | 'FILES_ONLY';

export type EnvironmentType =
  | 'DEVELOPMENT'
  | 'OTHER'
  | 'PREVIEW'
  | 'PRODUCTION'
  | 'STAGING';

export type ErrorCode =
  | 'ALERT_NOT_FOUND'
  | 'API_KEY_NOT_FOUND'
  | 'API_KEY_REVOKED'
  | 'BASE_BACKUP_RUNNING'
  | 'COPY_EXISTS'
  | 'DATABASE_CREATE_FORBIDDEN'
  | 'DATABASE_UNREACHABLE'
  | 'DESTINATION_IN_USE'
  | 'DESTINATION_NOT_FOUND'
  | 'DESTINATION_NO_REPOSITORY'
  | 'DRILL_RUNNING'
  | 'ENVIRONMENT_LOCKED'
  | 'ENVIRONMENT_NOT_FOUND'
  | 'ENVIRONMENT_NOT_READY'
  | 'IDEMPOTENCY_KEY_REUSED'
  | 'IMPORT_FAILED'
  | 'IMPORT_FORMAT_UNKNOWN'
  | 'IMPORT_SOURCE_UNREADABLE'
  | 'IMPORT_TOO_LARGE'
  | 'IMPORT_URL_REFUSED'
  | 'MAX_PINNED'
  | 'NAME_TAKEN'
  | 'NODE_NOT_FOUND'
  | 'NO_DESTINATION'
  | 'OPERATION_FINISHED'
  | 'OPERATION_NOT_FOUND'
  | 'OPERATION_RUNNING'
  | 'PITR_AFTER_ARCHIVED_WAL'
  | 'PITR_BEFORE_FIRST_BASE_BACKUP'
  | 'PITR_IN_GAP'
  | 'PITR_NOT_ENABLED'
  | 'PITR_NO_ARCHIVE'
  | 'PITR_SOURCE_UNSUITABLE'
  | 'PITR_TIME_NOT_RECOVERABLE'
  | 'PROJECT_NOT_EMPTY'
  | 'PROJECT_NOT_FOUND'
  | 'RECOVERY_INSTANCE_LIMIT'
  | 'RECOVERY_INSTANCE_NOT_FOUND'
  | 'RECOVERY_INSTANCE_NOT_READY'
  | 'RESTORE_RUNNING'
  | 'SCHEDULE_NOT_FOUND'
  | 'SNAPSHOT_DAMAGED'
  | 'SNAPSHOT_NOT_FOUND'
  | 'SNAPSHOT_NOT_READY'
  | 'SNAPSHOT_PINNED'
  | 'VALIDATION_FAILED'
  | 'WEBHOOK_NOT_FOUND';

/** One source: `file` (a multipart upload), `url` (https; fetched by the job), or `destinationId` with `key` (a file beside the repository on one of your destinations). Plain SQL, pg_dump custom or tar format, raw, gzip or zstd: told by the content. */
export type ImportDumpInput = {
  createSafetySnapshot?: boolean | null | undefined;
  destinationId?: string | number | null | undefined;
  environmentId: string | number;
  file?: unknown;
  idempotencyKey?: string | null | undefined;
  /** The file's key under the destination's root (S3: under its prefix) */
  key?: string | null | undefined;
  url?: string | null | undefined;
};

/** An environment this restore creates in the snapshot’s project: its database `<source db>_<name>` on the source’s server (the source’s role needs CREATEDB), its folder `<source folder>-<name>` beside the source’s. It is PROVISIONING until the restore succeeds (then READY), FAILED if it does not, with its database and folder removed. */
export type NewEnvironmentInput = {
  name: string;
  /** Defaults to DEVELOPMENT */
  type?: EnvironmentType | null | undefined;
};

export type OperationStatus =
  | 'CANCELLED'
  | 'FAILED'
  | 'QUEUED'
  | 'RUNNING'
  | 'SUCCEEDED';

export type OperationType =
  | 'BASE_BACKUP'
  | 'COPY_SNAPSHOT'
  | 'DELETE_SNAPSHOT'
  | 'IMPORT'
  | 'RECOVERY_INSTANCE'
  | 'RESTORE'
  | 'RESTORE_DRILL'
  | 'RETENTION'
  | 'SNAPSHOT'
  | 'VERIFY_SNAPSHOT';

export type RestoreSnapshotInput = {
  createSafetySnapshot?: boolean | null | undefined;
  idempotencyKey?: string | null | undefined;
  /** Default: what the snapshot holds */
  includes?: Array<SnapshotInclude> | null | undefined;
  /** Restore into a new environment instead (not with targetEnvironmentId); createSafetySnapshot is ignored then: there is nothing to protect */
  newEnvironment?: NewEnvironmentInput | null | undefined;
  snapshotId: string | number;
  strategy?: RestoreStrategy | null | undefined;
  /** Default: the snapshot’s own environment */
  targetEnvironmentId?: string | number | null | undefined;
};

/** SWAP: restore beside the live database, then swap names in one short step (needs CREATEDB). IN_PLACE: pg_restore --clean in one transaction. */
export type RestoreStrategy =
  | 'IN_PLACE'
  | 'SWAP';

/** What a snapshot includes, as one choice */
export type SnapshotContents =
  | 'DATABASE_AND_FILES'
  | 'DATABASE_ONLY'
  | 'FILES_ONLY';

export type SnapshotFilter = {
  createdAfter?: string | null | undefined;
  createdBefore?: string | null | undefined;
  environmentTypes?: Array<EnvironmentType> | null | undefined;
  /** Only snapshots with exactly this content */
  includes?: SnapshotContents | null | undefined;
  kinds?: Array<SnapshotKind> | null | undefined;
  labelContains?: string | null | undefined;
  pinned?: boolean | null | undefined;
  statuses?: Array<SnapshotStatus> | null | undefined;
};

export type SnapshotInclude =
  | 'DB'
  | 'FILES';

export type SnapshotKind =
  | 'IMPORT'
  | 'MANUAL'
  | 'PRE_DEPLOY'
  | 'SAFETY'
  | 'SCHEDULED';

/** Identifies the code the data belonged to */
export type SnapshotMetadataInput = {
  appVersion?: string | null | undefined;
  deploymentId?: string | null | undefined;
  gitCommit?: string | null | undefined;
};

export type SnapshotStatus =
  | 'CREATING'
  | 'DAMAGED'
  | 'DELETED'
  | 'DELETING'
  | 'FAILED'
  | 'READY';

type ClientError_ConflictError_Fragment = { __typename: 'ConflictError', code: ErrorCode, message: string };

type ClientError_NotFoundError_Fragment = { __typename: 'NotFoundError', code: ErrorCode, message: string };

type ClientError_ValidationError_Fragment = { __typename: 'ValidationError', code: ErrorCode, message: string, fields: Array<{ path: Array<string>, message: string }> };

export type ClientErrorFragment =
  | ClientError_ConflictError_Fragment
  | ClientError_NotFoundError_Fragment
  | ClientError_ValidationError_Fragment
;

export type ClientOperationFragment = { id: string, type: OperationType, status: OperationStatus, phase: string | null, message: string | null, bytesDone: string, bytesTotal: string | null, percent: number | null, error: string | null, snapshot: { id: string, status: SnapshotStatus } | null };

export type ClientProjectsQueryVariables = Exact<{
  after?: string | null | undefined;
}>;


export type ClientProjectsQuery = { projects: { pageInfo: { hasNextPage: boolean, endCursor: string | null }, edges: Array<{ node: { id: string, name: string } }> } };

export type ClientProjectEnvironmentsQueryVariables = Exact<{
  id: string | number;
  after?: string | null | undefined;
}>;


export type ClientProjectEnvironmentsQuery = { project: { environments: { pageInfo: { hasNextPage: boolean, endCursor: string | null }, edges: Array<{ node: { id: string, name: string } }> } } | null };

export type ClientEnvironmentQueryVariables = Exact<{
  id: string | number;
}>;


export type ClientEnvironmentQuery = { environment: { id: string, name: string, project: { name: string } } | null };

export type ClientCreateSnapshotMutationVariables = Exact<{
  input: CreateSnapshotInput;
}>;


export type ClientCreateSnapshotMutation = { createSnapshot:
    | { __typename: 'ConflictError', code: ErrorCode, message: string }
    | { __typename: 'NotFoundError', code: ErrorCode, message: string }
    | { __typename: 'SnapshotOperationPayload', operation: { id: string, type: OperationType, status: OperationStatus, phase: string | null, message: string | null, bytesDone: string, bytesTotal: string | null, percent: number | null, error: string | null, snapshot: { id: string, status: SnapshotStatus } | null }, snapshot: { id: string, kind: SnapshotKind, includes: Array<SnapshotInclude>, label: string | null, status: SnapshotStatus, createdAt: string } }
    | { __typename: 'ValidationError', code: ErrorCode, message: string, fields: Array<{ path: Array<string>, message: string }> }
   };

export type ClientSnapshotsQueryVariables = Exact<{
  id: string | number;
  after?: string | null | undefined;
  filter?: SnapshotFilter | null | undefined;
}>;


export type ClientSnapshotsQuery = { environment: { snapshots: { pageInfo: { hasNextPage: boolean, endCursor: string | null }, edges: Array<{ node: { id: string, kind: SnapshotKind, includes: Array<SnapshotInclude>, status: SnapshotStatus, label: string | null, sizeBytes: string, pinned: boolean, createdAt: string, error: string | null } }> } } | null };

export type ClientRestoreSnapshotMutationVariables = Exact<{
  input: RestoreSnapshotInput;
}>;


export type ClientRestoreSnapshotMutation = { restoreSnapshot:
    | { __typename: 'ConflictError', code: ErrorCode, message: string }
    | { __typename: 'NotFoundError', code: ErrorCode, message: string }
    | { __typename: 'RestorePayload', operation: { id: string, type: OperationType, status: OperationStatus, phase: string | null, message: string | null, bytesDone: string, bytesTotal: string | null, percent: number | null, error: string | null, snapshot: { id: string, status: SnapshotStatus } | null }, restoreLog: { id: string, status: OperationStatus, strategy: RestoreStrategy, includes: Array<SnapshotInclude> } }
    | { __typename: 'ValidationError', code: ErrorCode, message: string, fields: Array<{ path: Array<string>, message: string }> }
   };

export type ClientOperationStateQueryVariables = Exact<{
  id: string | number;
}>;


export type ClientOperationStateQuery = { operation: { id: string, type: OperationType, status: OperationStatus, phase: string | null, message: string | null, bytesDone: string, bytesTotal: string | null, percent: number | null, error: string | null, snapshot: { id: string, status: SnapshotStatus } | null } | null };

export type ClientWatchOperationSubscriptionVariables = Exact<{
  id: string | number;
}>;


export type ClientWatchOperationSubscription = { operation: { id: string, type: OperationType, status: OperationStatus, phase: string | null, message: string | null, bytesDone: string, bytesTotal: string | null, percent: number | null, error: string | null, snapshot: { id: string, status: SnapshotStatus } | null } };

export type ClientEnvironmentsQueryVariables = Exact<{
  after?: string | null | undefined;
}>;


export type ClientEnvironmentsQuery = { environments: { pageInfo: { hasNextPage: boolean, endCursor: string | null }, edges: Array<{ node: { id: string, name: string } }> } };

export type ClientSnapshotDownloadQueryVariables = Exact<{
  id: string | number;
  variant?: DownloadVariant | null | undefined;
}>;


export type ClientSnapshotDownloadQuery = { snapshot: { id: string, download:
      | { __typename: 'ConflictError', code: ErrorCode, message: string }
      | { __typename: 'Download', url: string, expiresAt: string, sizeBytes: string }
      | { __typename: 'NotFoundError', code: ErrorCode, message: string }
      | { __typename: 'ValidationError', code: ErrorCode, message: string, fields: Array<{ path: Array<string>, message: string }> }
     } | null };

export type ClientImportDumpMutationVariables = Exact<{
  input: ImportDumpInput;
}>;


export type ClientImportDumpMutation = { importDump:
    | { __typename: 'ConflictError', code: ErrorCode, message: string }
    | { __typename: 'ImportDumpPayload', operation: { id: string, type: OperationType, status: OperationStatus, phase: string | null, message: string | null, bytesDone: string, bytesTotal: string | null, percent: number | null, error: string | null, snapshot: { id: string, status: SnapshotStatus } | null }, restoreLog: { id: string, status: OperationStatus }, snapshot: { id: string, kind: SnapshotKind, status: SnapshotStatus } }
    | { __typename: 'NotFoundError', code: ErrorCode, message: string }
    | { __typename: 'ValidationError', code: ErrorCode, message: string, fields: Array<{ path: Array<string>, message: string }> }
   };

export const ClientErrorFragmentDoc = {"kind":"Document","definitions":[{"kind":"FragmentDefinition","name":{"kind":"Name","value":"ClientError"},"typeCondition":{"kind":"NamedType","name":{"kind":"Name","value":"Error"}},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"__typename"}},{"kind":"Field","name":{"kind":"Name","value":"code"}},{"kind":"Field","name":{"kind":"Name","value":"message"}},{"kind":"InlineFragment","typeCondition":{"kind":"NamedType","name":{"kind":"Name","value":"ValidationError"}},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"fields"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"path"}},{"kind":"Field","name":{"kind":"Name","value":"message"}}]}}]}}]}}]} as unknown as DocumentNode<ClientErrorFragment, unknown>;
export const ClientOperationFragmentDoc = {"kind":"Document","definitions":[{"kind":"FragmentDefinition","name":{"kind":"Name","value":"ClientOperation"},"typeCondition":{"kind":"NamedType","name":{"kind":"Name","value":"Operation"}},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"type"}},{"kind":"Field","name":{"kind":"Name","value":"status"}},{"kind":"Field","name":{"kind":"Name","value":"phase"}},{"kind":"Field","name":{"kind":"Name","value":"message"}},{"kind":"Field","name":{"kind":"Name","value":"bytesDone"}},{"kind":"Field","name":{"kind":"Name","value":"bytesTotal"}},{"kind":"Field","name":{"kind":"Name","value":"percent"}},{"kind":"Field","name":{"kind":"Name","value":"error"}},{"kind":"Field","name":{"kind":"Name","value":"snapshot"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"status"}}]}}]}}]} as unknown as DocumentNode<ClientOperationFragment, unknown>;
export const ClientProjectsDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"query","name":{"kind":"Name","value":"ClientProjects"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"after"}},"type":{"kind":"NamedType","name":{"kind":"Name","value":"String"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"projects"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"first"},"value":{"kind":"IntValue","value":"100"}},{"kind":"Argument","name":{"kind":"Name","value":"after"},"value":{"kind":"Variable","name":{"kind":"Name","value":"after"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"pageInfo"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"hasNextPage"}},{"kind":"Field","name":{"kind":"Name","value":"endCursor"}}]}},{"kind":"Field","name":{"kind":"Name","value":"edges"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"node"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"name"}}]}}]}}]}}]}}]} as unknown as DocumentNode<ClientProjectsQuery, ClientProjectsQueryVariables>;
export const ClientProjectEnvironmentsDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"query","name":{"kind":"Name","value":"ClientProjectEnvironments"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"id"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"ID"}}}},{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"after"}},"type":{"kind":"NamedType","name":{"kind":"Name","value":"String"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"project"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"id"},"value":{"kind":"Variable","name":{"kind":"Name","value":"id"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"environments"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"first"},"value":{"kind":"IntValue","value":"100"}},{"kind":"Argument","name":{"kind":"Name","value":"after"},"value":{"kind":"Variable","name":{"kind":"Name","value":"after"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"pageInfo"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"hasNextPage"}},{"kind":"Field","name":{"kind":"Name","value":"endCursor"}}]}},{"kind":"Field","name":{"kind":"Name","value":"edges"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"node"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"name"}}]}}]}}]}}]}}]}}]} as unknown as DocumentNode<ClientProjectEnvironmentsQuery, ClientProjectEnvironmentsQueryVariables>;
export const ClientEnvironmentDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"query","name":{"kind":"Name","value":"ClientEnvironment"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"id"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"ID"}}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"environment"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"id"},"value":{"kind":"Variable","name":{"kind":"Name","value":"id"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"name"}},{"kind":"Field","name":{"kind":"Name","value":"project"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"name"}}]}}]}}]}}]} as unknown as DocumentNode<ClientEnvironmentQuery, ClientEnvironmentQueryVariables>;
export const ClientCreateSnapshotDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"mutation","name":{"kind":"Name","value":"ClientCreateSnapshot"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"input"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"CreateSnapshotInput"}}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"createSnapshot"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"input"},"value":{"kind":"Variable","name":{"kind":"Name","value":"input"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"__typename"}},{"kind":"InlineFragment","typeCondition":{"kind":"NamedType","name":{"kind":"Name","value":"SnapshotOperationPayload"}},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"operation"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"FragmentSpread","name":{"kind":"Name","value":"ClientOperation"}}]}},{"kind":"Field","name":{"kind":"Name","value":"snapshot"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"kind"}},{"kind":"Field","name":{"kind":"Name","value":"includes"}},{"kind":"Field","name":{"kind":"Name","value":"label"}},{"kind":"Field","name":{"kind":"Name","value":"status"}},{"kind":"Field","name":{"kind":"Name","value":"createdAt"}}]}}]}},{"kind":"FragmentSpread","name":{"kind":"Name","value":"ClientError"}}]}}]}},{"kind":"FragmentDefinition","name":{"kind":"Name","value":"ClientOperation"},"typeCondition":{"kind":"NamedType","name":{"kind":"Name","value":"Operation"}},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"type"}},{"kind":"Field","name":{"kind":"Name","value":"status"}},{"kind":"Field","name":{"kind":"Name","value":"phase"}},{"kind":"Field","name":{"kind":"Name","value":"message"}},{"kind":"Field","name":{"kind":"Name","value":"bytesDone"}},{"kind":"Field","name":{"kind":"Name","value":"bytesTotal"}},{"kind":"Field","name":{"kind":"Name","value":"percent"}},{"kind":"Field","name":{"kind":"Name","value":"error"}},{"kind":"Field","name":{"kind":"Name","value":"snapshot"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"status"}}]}}]}},{"kind":"FragmentDefinition","name":{"kind":"Name","value":"ClientError"},"typeCondition":{"kind":"NamedType","name":{"kind":"Name","value":"Error"}},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"__typename"}},{"kind":"Field","name":{"kind":"Name","value":"code"}},{"kind":"Field","name":{"kind":"Name","value":"message"}},{"kind":"InlineFragment","typeCondition":{"kind":"NamedType","name":{"kind":"Name","value":"ValidationError"}},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"fields"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"path"}},{"kind":"Field","name":{"kind":"Name","value":"message"}}]}}]}}]}}]} as unknown as DocumentNode<ClientCreateSnapshotMutation, ClientCreateSnapshotMutationVariables>;
export const ClientSnapshotsDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"query","name":{"kind":"Name","value":"ClientSnapshots"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"id"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"ID"}}}},{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"after"}},"type":{"kind":"NamedType","name":{"kind":"Name","value":"String"}}},{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"filter"}},"type":{"kind":"NamedType","name":{"kind":"Name","value":"SnapshotFilter"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"environment"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"id"},"value":{"kind":"Variable","name":{"kind":"Name","value":"id"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"snapshots"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"first"},"value":{"kind":"IntValue","value":"100"}},{"kind":"Argument","name":{"kind":"Name","value":"after"},"value":{"kind":"Variable","name":{"kind":"Name","value":"after"}}},{"kind":"Argument","name":{"kind":"Name","value":"filter"},"value":{"kind":"Variable","name":{"kind":"Name","value":"filter"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"pageInfo"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"hasNextPage"}},{"kind":"Field","name":{"kind":"Name","value":"endCursor"}}]}},{"kind":"Field","name":{"kind":"Name","value":"edges"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"node"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"kind"}},{"kind":"Field","name":{"kind":"Name","value":"includes"}},{"kind":"Field","name":{"kind":"Name","value":"status"}},{"kind":"Field","name":{"kind":"Name","value":"label"}},{"kind":"Field","name":{"kind":"Name","value":"sizeBytes"}},{"kind":"Field","name":{"kind":"Name","value":"pinned"}},{"kind":"Field","name":{"kind":"Name","value":"createdAt"}},{"kind":"Field","name":{"kind":"Name","value":"error"}}]}}]}}]}}]}}]}}]} as unknown as DocumentNode<ClientSnapshotsQuery, ClientSnapshotsQueryVariables>;
export const ClientRestoreSnapshotDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"mutation","name":{"kind":"Name","value":"ClientRestoreSnapshot"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"input"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"RestoreSnapshotInput"}}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"restoreSnapshot"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"input"},"value":{"kind":"Variable","name":{"kind":"Name","value":"input"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"__typename"}},{"kind":"InlineFragment","typeCondition":{"kind":"NamedType","name":{"kind":"Name","value":"RestorePayload"}},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"operation"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"FragmentSpread","name":{"kind":"Name","value":"ClientOperation"}}]}},{"kind":"Field","name":{"kind":"Name","value":"restoreLog"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"status"}},{"kind":"Field","name":{"kind":"Name","value":"strategy"}},{"kind":"Field","name":{"kind":"Name","value":"includes"}}]}}]}},{"kind":"FragmentSpread","name":{"kind":"Name","value":"ClientError"}}]}}]}},{"kind":"FragmentDefinition","name":{"kind":"Name","value":"ClientOperation"},"typeCondition":{"kind":"NamedType","name":{"kind":"Name","value":"Operation"}},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"type"}},{"kind":"Field","name":{"kind":"Name","value":"status"}},{"kind":"Field","name":{"kind":"Name","value":"phase"}},{"kind":"Field","name":{"kind":"Name","value":"message"}},{"kind":"Field","name":{"kind":"Name","value":"bytesDone"}},{"kind":"Field","name":{"kind":"Name","value":"bytesTotal"}},{"kind":"Field","name":{"kind":"Name","value":"percent"}},{"kind":"Field","name":{"kind":"Name","value":"error"}},{"kind":"Field","name":{"kind":"Name","value":"snapshot"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"status"}}]}}]}},{"kind":"FragmentDefinition","name":{"kind":"Name","value":"ClientError"},"typeCondition":{"kind":"NamedType","name":{"kind":"Name","value":"Error"}},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"__typename"}},{"kind":"Field","name":{"kind":"Name","value":"code"}},{"kind":"Field","name":{"kind":"Name","value":"message"}},{"kind":"InlineFragment","typeCondition":{"kind":"NamedType","name":{"kind":"Name","value":"ValidationError"}},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"fields"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"path"}},{"kind":"Field","name":{"kind":"Name","value":"message"}}]}}]}}]}}]} as unknown as DocumentNode<ClientRestoreSnapshotMutation, ClientRestoreSnapshotMutationVariables>;
export const ClientOperationStateDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"query","name":{"kind":"Name","value":"ClientOperationState"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"id"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"ID"}}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"operation"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"id"},"value":{"kind":"Variable","name":{"kind":"Name","value":"id"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"FragmentSpread","name":{"kind":"Name","value":"ClientOperation"}}]}}]}},{"kind":"FragmentDefinition","name":{"kind":"Name","value":"ClientOperation"},"typeCondition":{"kind":"NamedType","name":{"kind":"Name","value":"Operation"}},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"type"}},{"kind":"Field","name":{"kind":"Name","value":"status"}},{"kind":"Field","name":{"kind":"Name","value":"phase"}},{"kind":"Field","name":{"kind":"Name","value":"message"}},{"kind":"Field","name":{"kind":"Name","value":"bytesDone"}},{"kind":"Field","name":{"kind":"Name","value":"bytesTotal"}},{"kind":"Field","name":{"kind":"Name","value":"percent"}},{"kind":"Field","name":{"kind":"Name","value":"error"}},{"kind":"Field","name":{"kind":"Name","value":"snapshot"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"status"}}]}}]}}]} as unknown as DocumentNode<ClientOperationStateQuery, ClientOperationStateQueryVariables>;
export const ClientWatchOperationDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"subscription","name":{"kind":"Name","value":"ClientWatchOperation"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"id"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"ID"}}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"operation"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"id"},"value":{"kind":"Variable","name":{"kind":"Name","value":"id"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"FragmentSpread","name":{"kind":"Name","value":"ClientOperation"}}]}}]}},{"kind":"FragmentDefinition","name":{"kind":"Name","value":"ClientOperation"},"typeCondition":{"kind":"NamedType","name":{"kind":"Name","value":"Operation"}},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"type"}},{"kind":"Field","name":{"kind":"Name","value":"status"}},{"kind":"Field","name":{"kind":"Name","value":"phase"}},{"kind":"Field","name":{"kind":"Name","value":"message"}},{"kind":"Field","name":{"kind":"Name","value":"bytesDone"}},{"kind":"Field","name":{"kind":"Name","value":"bytesTotal"}},{"kind":"Field","name":{"kind":"Name","value":"percent"}},{"kind":"Field","name":{"kind":"Name","value":"error"}},{"kind":"Field","name":{"kind":"Name","value":"snapshot"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"status"}}]}}]}}]} as unknown as DocumentNode<ClientWatchOperationSubscription, ClientWatchOperationSubscriptionVariables>;
export const ClientEnvironmentsDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"query","name":{"kind":"Name","value":"ClientEnvironments"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"after"}},"type":{"kind":"NamedType","name":{"kind":"Name","value":"String"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"environments"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"first"},"value":{"kind":"IntValue","value":"100"}},{"kind":"Argument","name":{"kind":"Name","value":"after"},"value":{"kind":"Variable","name":{"kind":"Name","value":"after"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"pageInfo"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"hasNextPage"}},{"kind":"Field","name":{"kind":"Name","value":"endCursor"}}]}},{"kind":"Field","name":{"kind":"Name","value":"edges"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"node"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"name"}}]}}]}}]}}]}}]} as unknown as DocumentNode<ClientEnvironmentsQuery, ClientEnvironmentsQueryVariables>;
export const ClientSnapshotDownloadDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"query","name":{"kind":"Name","value":"ClientSnapshotDownload"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"id"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"ID"}}}},{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"variant"}},"type":{"kind":"NamedType","name":{"kind":"Name","value":"DownloadVariant"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"snapshot"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"id"},"value":{"kind":"Variable","name":{"kind":"Name","value":"id"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"download"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"variant"},"value":{"kind":"Variable","name":{"kind":"Name","value":"variant"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"__typename"}},{"kind":"InlineFragment","typeCondition":{"kind":"NamedType","name":{"kind":"Name","value":"Download"}},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"url"}},{"kind":"Field","name":{"kind":"Name","value":"expiresAt"}},{"kind":"Field","name":{"kind":"Name","value":"sizeBytes"}}]}},{"kind":"FragmentSpread","name":{"kind":"Name","value":"ClientError"}}]}}]}}]}},{"kind":"FragmentDefinition","name":{"kind":"Name","value":"ClientError"},"typeCondition":{"kind":"NamedType","name":{"kind":"Name","value":"Error"}},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"__typename"}},{"kind":"Field","name":{"kind":"Name","value":"code"}},{"kind":"Field","name":{"kind":"Name","value":"message"}},{"kind":"InlineFragment","typeCondition":{"kind":"NamedType","name":{"kind":"Name","value":"ValidationError"}},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"fields"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"path"}},{"kind":"Field","name":{"kind":"Name","value":"message"}}]}}]}}]}}]} as unknown as DocumentNode<ClientSnapshotDownloadQuery, ClientSnapshotDownloadQueryVariables>;
export const ClientImportDumpDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"mutation","name":{"kind":"Name","value":"ClientImportDump"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"input"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"ImportDumpInput"}}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"importDump"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"input"},"value":{"kind":"Variable","name":{"kind":"Name","value":"input"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"__typename"}},{"kind":"InlineFragment","typeCondition":{"kind":"NamedType","name":{"kind":"Name","value":"ImportDumpPayload"}},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"operation"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"FragmentSpread","name":{"kind":"Name","value":"ClientOperation"}}]}},{"kind":"Field","name":{"kind":"Name","value":"restoreLog"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"status"}}]}},{"kind":"Field","name":{"kind":"Name","value":"snapshot"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"kind"}},{"kind":"Field","name":{"kind":"Name","value":"status"}}]}}]}},{"kind":"FragmentSpread","name":{"kind":"Name","value":"ClientError"}}]}}]}},{"kind":"FragmentDefinition","name":{"kind":"Name","value":"ClientOperation"},"typeCondition":{"kind":"NamedType","name":{"kind":"Name","value":"Operation"}},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"type"}},{"kind":"Field","name":{"kind":"Name","value":"status"}},{"kind":"Field","name":{"kind":"Name","value":"phase"}},{"kind":"Field","name":{"kind":"Name","value":"message"}},{"kind":"Field","name":{"kind":"Name","value":"bytesDone"}},{"kind":"Field","name":{"kind":"Name","value":"bytesTotal"}},{"kind":"Field","name":{"kind":"Name","value":"percent"}},{"kind":"Field","name":{"kind":"Name","value":"error"}},{"kind":"Field","name":{"kind":"Name","value":"snapshot"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"status"}}]}}]}},{"kind":"FragmentDefinition","name":{"kind":"Name","value":"ClientError"},"typeCondition":{"kind":"NamedType","name":{"kind":"Name","value":"Error"}},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"__typename"}},{"kind":"Field","name":{"kind":"Name","value":"code"}},{"kind":"Field","name":{"kind":"Name","value":"message"}},{"kind":"InlineFragment","typeCondition":{"kind":"NamedType","name":{"kind":"Name","value":"ValidationError"}},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"fields"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"path"}},{"kind":"Field","name":{"kind":"Name","value":"message"}}]}}]}}]}}]} as unknown as DocumentNode<ClientImportDumpMutation, ClientImportDumpMutationVariables>;