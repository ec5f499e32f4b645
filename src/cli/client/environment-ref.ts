/**
 * `<env>` on the command line: an environment's global id, `project/environment` by name, or a
 * name alone when no other visible environment has it, looked up through the API (so a key sees exactly the environments it may see).
 */
import { ApiError, ClientUsageError, type ApiClient } from './api.ts';
import { ClientEnvironmentDocument, ClientEnvironmentsDocument, ClientProjectEnvironmentsDocument, ClientProjectsDocument } from './generated/graphql.ts';

/** Relay global ids are base64 of `Type:id`; base64 may hold a '/', so look at what it decodes to. */
function isEnvironmentId(ref: string): boolean {
  return /^[A-Za-z0-9+/=]+$/.test(ref) && Buffer.from(ref, 'base64').toString('utf8').startsWith('Environment:');
}

async function byName<T extends { id: string; name: string }>(
  what: string,
  code: 'PROJECT' | 'ENVIRONMENT',
  name: string,
  page: (after: string | null | undefined) => Promise<{ items: T[]; next: string | null | undefined }>,
): Promise<T> {
  const found: T[] = [];
  let after: string | null | undefined;
  do {
    const p = await page(after);
    found.push(...p.items.filter((i) => i.name === name));
    after = p.next;
  } while (after);
  if (found.length === 0) throw new ApiError(`no ${what} named "${name}" (or not visible to this key)`, `${code}_NOT_FOUND`);
  if (found.length > 1) throw new ApiError(`${found.length} ${what}s are named "${name}": use project/environment or the id`, 'AMBIGUOUS_NAME');
  return found[0]!;
}

export async function resolveEnvironment(api: ApiClient, ref: string): Promise<string> {
  if (isEnvironmentId(ref)) {
    const { environment } = await api.request(ClientEnvironmentDocument, { id: ref });
    if (!environment) throw new ApiError(`environment ${ref} not found (or not visible to this key)`, 'ENVIRONMENT_NOT_FOUND');
    return environment.id;
  }
  const slash = ref.indexOf('/');
  if (slash === -1) {
    const env = await byName('environment', 'ENVIRONMENT', ref, async (after) => {
      const { environments } = await api.request(ClientEnvironmentsDocument, { after });
      return { items: environments.edges.map((e) => e.node), next: environments.pageInfo.hasNextPage ? environments.pageInfo.endCursor : undefined };
    });
    return env.id;
  }
  if (slash === 0 || slash === ref.length - 1) throw new ClientUsageError(`"${ref}" is neither an environment id, project/environment nor a name`);
  const projectName = ref.slice(0, slash);
  const envName = ref.slice(slash + 1);
  const project = await byName('project', 'PROJECT', projectName, async (after) => {
    const { projects } = await api.request(ClientProjectsDocument, { after });
    return { items: projects.edges.map((e) => e.node), next: projects.pageInfo.hasNextPage ? projects.pageInfo.endCursor : undefined };
  });
  const env = await byName(`environment of ${projectName}`, 'ENVIRONMENT', envName, async (after) => {
    const { project: p } = await api.request(ClientProjectEnvironmentsDocument, { id: project.id, after });
    if (!p) return { items: [], next: undefined };
    return { items: p.environments.edges.map((e) => e.node), next: p.environments.pageInfo.hasNextPage ? p.environments.pageInfo.endCursor : undefined };
  });
  return env.id;
}
