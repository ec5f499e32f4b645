import { useMutation, useQuery } from '@urql/preact';
import { useState } from 'preact/hooks';
import { ErrorBox, fromCombined, typedError, type ApiProblem } from '../components/errors.tsx';
import { when } from '../format.ts';
import { ConsoleDestinationsDocument, ConsoleTestDestinationDocument, type ConsoleTestDestinationMutation } from '../generated/graphql.ts';
import { useConsole } from '../state.ts';

type TestResult = Extract<ConsoleTestDestinationMutation['testDestination'], { __typename: 'DestinationTestPayload' }>;

function DestinationRow({ d }: { d: { id: string; name: string; provider: string; location: string; status: string; lastCheckedAt?: string | null; lastError?: string | null; isDefault: boolean; environments: Array<{ id: string; name: string }> } }) {
  const { abilities } = useConsole();
  const [res, test] = useMutation(ConsoleTestDestinationDocument);
  const [problem, setProblem] = useState<ApiProblem | null>(null);
  const [result, setResult] = useState<TestResult | null>(null);
  return (
    <div class="card" data-destination={d.id}>
      <h2>
        {d.name} <span class={`status ${d.status.toLowerCase()}`}>{d.status}</span>
        {d.isDefault ? <span class="muted"> · default</span> : null}
      </h2>
      <p>
        {d.provider} · <code>{d.location}</code>
      </p>
      <p class="muted">
        checked {when(d.lastCheckedAt)}
        {d.lastError ? <span class="error"> · {d.lastError}</span> : null}
      </p>
      <p>
        Environments:{' '}
        {d.environments.map((e) => (
          <a href={`#/env/${encodeURIComponent(e.id)}`}>{e.name} </a>
        ))}
      </p>
      {abilities.admin ? (
        <button
          type="button"
          class="write"
          disabled={res.fetching}
          onClick={async () => {
            setProblem(null);
            const r = await test({ input: { id: d.id } });
            const out = r.data?.testDestination;
            const p = fromCombined(r.error) ?? typedError(out);
            setProblem(p);
            if (out?.__typename === 'DestinationTestPayload') setResult(out);
          }}
        >
          {res.fetching ? 'Testing…' : 'Test'}
        </button>
      ) : null}
      <ErrorBox problem={problem} />
      {result ? (
        <ul class="probe">
          {result.steps.map((s) => (
            <li>
              {s.ok ? '✔' : '✘'} {s.step.toLowerCase()} {s.latencyMs} ms {s.error ?? ''}
            </li>
          ))}
        </ul>
      ) : null}
    </div>
  );
}

/** Where snapshots are stored (admin). Copies per snapshot are on each snapshot's row. */
export function DestinationsPage() {
  const [res] = useQuery({ query: ConsoleDestinationsDocument });
  return (
    <section>
      <h1>Destinations</h1>
      <ErrorBox problem={fromCombined(res.error)} />
      {res.data?.destinations.edges.map(({ node }) => (
        <DestinationRow key={node.id} d={node} />
      ))}
    </section>
  );
}
