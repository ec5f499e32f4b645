import type { CombinedError } from '@urql/core';

/** An error as the API words it: its code and message, never a blank page. */
export interface ApiProblem {
  code: string;
  message: string;
}

/** The typed error of a mutation's result union, if that is what came back. */
export function typedError(result: object | null | undefined): ApiProblem | null {
  const r = result as { __typename?: string; code?: string; message?: string } | null | undefined;
  if (r && r.code && r.message && /Error$/.test(r.__typename ?? '')) return { code: r.code, message: r.message };
  return null;
}

export function fromCombined(error: CombinedError | undefined): ApiProblem | null {
  if (!error) return null;
  const g = error.graphQLErrors[0];
  if (g) return { code: String(g.extensions?.code ?? 'ERROR'), message: g.message };
  return { code: 'NETWORK_ERROR', message: error.networkError?.message ?? error.message };
}

export function ErrorBox({ problem }: { problem: ApiProblem | null | undefined }) {
  if (!problem) return null;
  return (
    <div class="error" role="alert">
      <code>{problem.code}</code> {problem.message}
    </div>
  );
}
