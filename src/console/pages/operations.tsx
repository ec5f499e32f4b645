/**
 * Live operations: each operation this tab started or saw start, with its progress from the
 * `operation` subscription (the environments' `environmentActivity` adds new ones); finished ones
 * stay with their result until dismissed.
 */
import { OperationCard } from '../components/operation-card.tsx';
import { useTrackedOperations } from '../tracked.ts';

export function OperationsPage() {
  const tracked = useTrackedOperations();
  return (
    <section>
      <h1>Live operations</h1>
      {tracked.length === 0 ? <p class="muted">No operation started or seen since you signed in.</p> : null}
      {tracked.map((t) => (
        <OperationCard key={t.id} id={t.id} />
      ))}
    </section>
  );
}
