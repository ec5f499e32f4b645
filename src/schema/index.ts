// The schema is the sum of its domain modules; importing one registers its types and fields.
import { builder } from './builder.ts';
import './scalars.ts';
import './errors.ts';
import './node.ts';
import './viewer.ts';
import './project.ts';
import './environment.ts';
import './api-key.ts';
import './operation.ts';
import './snapshot.ts';
import './restore.ts';
import './destination.ts';
import './snapshot-copies.ts';
import './schedule.ts';
import './settings.ts';
import './alert.ts';
import './audit.ts';

export const schema = builder.toSchema({ sortSchema: true });
