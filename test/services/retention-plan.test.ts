/**
 * planRetention decides which snapshots are deleted: each case here stands alone (a pure
 * function, fixed instants), at the boundaries where a mistaken comparison would delete a
 * snapshot a user expects kept, or keep one past its time.
 */
import { describe, expect, it } from 'vitest';
// retention → snapshot-lifecycle → snapshots → schedules → retention is an import cycle; loading
// schedules first (as the app does) lets each module finish before its exports are used.
import '../../src/services/schedules.ts';
import { normalizePolicy, planRetention, type FullPolicy } from '../../src/services/retention.ts';

const NOW = new Date('2026-06-15T12:00:00Z');
const DAY = 86_400_000;
const HOUR = 3_600_000;

type Kind = 'MANUAL' | 'SCHEDULED' | 'PRE_DEPLOY' | 'SAFETY';
function snap(id: string, kind: Kind, createdAt: Date, extra: { full?: boolean; filesOnly?: boolean; pinned?: boolean; expiresAt?: Date } = {}) {
  return { id, kind, includes: extra.filesOnly ? (['FILES'] as const) : extra.full ? (['DB', 'FILES'] as const) : (['DB'] as const), pinned: extra.pinned ?? false, createdAt, expiresAt: extra.expiresAt ?? null } as never;
}
const ago = (ms: number) => new Date(NOW.getTime() - ms);
const policy = (p: Partial<FullPolicy> = {}): FullPolicy => ({ db: {}, full: {}, retentionDays: null, safetyRetentionDays: 7, timezone: 'UTC', ...p });
const plan = (snaps: unknown[], p: Partial<FullPolicy> = {}) => Object.fromEntries(planRetention(snaps as never, policy(p), NOW).map((d) => [d.snapshotId, `${d.action} ${d.rule}`]));

describe('planRetention', () => {
  it('manual snapshots: kept without an age limit; deleted only once strictly older than retentionDays', () => {
    const snaps = [snap('newest', 'MANUAL', ago(HOUR)), snap('at-limit', 'MANUAL', ago(3 * DAY)), snap('past', 'MANUAL', ago(3 * DAY + 1)), snap('pre', 'PRE_DEPLOY', ago(4 * DAY))];
    expect(plan(snaps)).toEqual({ newest: 'KEEP NO_LIMIT', 'at-limit': 'KEEP NO_LIMIT', past: 'KEEP NO_LIMIT', pre: 'KEEP NO_LIMIT' });
    expect(plan(snaps, { retentionDays: 3 })).toEqual({ newest: 'KEEP WITHIN_AGE_LIMIT', 'at-limit': 'KEEP WITHIN_AGE_LIMIT', past: 'DELETE OLDER_THAN_AGE_LIMIT', pre: 'DELETE OLDER_THAN_AGE_LIMIT' });
  });

  it('pinned snapshots are kept whatever their age, kind or expiry', () => {
    const snaps = [snap('new', 'MANUAL', ago(HOUR)), snap('pinned-old', 'MANUAL', ago(400 * DAY), { pinned: true }), snap('pinned-expired', 'SAFETY', ago(30 * DAY), { pinned: true, expiresAt: ago(DAY) })];
    expect(plan(snaps, { retentionDays: 1 })).toMatchObject({ 'pinned-old': 'KEEP PINNED', 'pinned-expired': 'KEEP PINNED' });
  });

  it('expiresAt: deleted at and after the instant, kept before it', () => {
    const snaps = [snap('newest', 'MANUAL', ago(0)), snap('at', 'SAFETY', ago(DAY), { expiresAt: NOW }), snap('before', 'SAFETY', ago(DAY), { expiresAt: new Date(NOW.getTime() + 1) }), snap('after', 'SAFETY', ago(DAY), { expiresAt: ago(1) })];
    expect(plan(snaps)).toMatchObject({ at: 'DELETE EXPIRED', before: 'KEEP SAFETY_PERIOD', after: 'DELETE EXPIRED' });
  });

  it('manual and pre-deploy snapshots with expiresAt (from retentionDays): deleted at the instant as past their age limit, whatever retentionDays says now', () => {
    const snaps = [snap('newest', 'MANUAL', ago(0)), snap('due', 'MANUAL', ago(DAY), { expiresAt: NOW }), snap('later', 'PRE_DEPLOY', ago(DAY), { expiresAt: new Date(NOW.getTime() + 1) }), snap('old', 'MANUAL', ago(90 * DAY), { expiresAt: new Date(NOW.getTime() + DAY) })];
    expect(plan(snaps, { retentionDays: 30 })).toEqual({ newest: 'KEEP WITHIN_AGE_LIMIT', due: 'DELETE OLDER_THAN_AGE_LIMIT', later: 'KEEP WITHIN_AGE_LIMIT', old: 'KEEP WITHIN_AGE_LIMIT' });
  });

  it('safety snapshots without expiresAt: kept for safetyRetentionDays, deleted once strictly older', () => {
    const snaps = [snap('newest', 'MANUAL', ago(0)), snap('at', 'SAFETY', ago(2 * DAY)), snap('past', 'SAFETY', ago(2 * DAY + 1))];
    expect(plan(snaps, { safetyRetentionDays: 2 })).toMatchObject({ at: 'KEEP SAFETY_PERIOD', past: 'DELETE EXPIRED' });
  });

  it('the newest READY snapshot is kept even when every rule would delete it; others are not', () => {
    const snaps = [snap('old', 'MANUAL', ago(10 * DAY)), snap('newest', 'MANUAL', ago(5 * DAY))];
    expect(plan(snaps, { retentionDays: 1 })).toEqual({ newest: 'KEEP NEWEST', old: 'DELETE OLDER_THAN_AGE_LIMIT' });
    // Given in any order, the newest is found by time.
    expect(plan([...snaps].reverse(), { retentionDays: 1 })).toEqual({ newest: 'KEEP NEWEST', old: 'DELETE OLDER_THAN_AGE_LIMIT' });
    expect(planRetention([], policy(), NOW)).toEqual([]);
  });

  it('scheduled: database-only and full snapshots follow their own policy', () => {
    const snaps = [snap('db-1', 'SCHEDULED', ago(1 * HOUR)), snap('db-2', 'SCHEDULED', ago(2 * HOUR)), snap('full-1', 'SCHEDULED', ago(3 * HOUR), { full: true }), snap('full-2', 'SCHEDULED', ago(4 * HOUR), { full: true })];
    expect(plan(snaps, { db: { hourly: 1 }, full: { hourly: 2 } })).toEqual({ 'db-1': 'KEEP HOURLY', 'db-2': 'DELETE OUTSIDE_GFS', 'full-1': 'KEEP HOURLY', 'full-2': 'KEEP HOURLY' });
  });

  it('scheduled without GFS counts: kept, or by maxAgeDays (deleted once strictly older)', () => {
    const snaps = [snap('new', 'SCHEDULED', ago(HOUR)), snap('at', 'SCHEDULED', ago(5 * DAY)), snap('past', 'SCHEDULED', ago(5 * DAY + 1))];
    expect(plan(snaps)).toEqual({ new: 'KEEP NO_LIMIT', at: 'KEEP NO_LIMIT', past: 'KEEP NO_LIMIT' });
    expect(plan(snaps, { db: { maxAgeDays: 5 } })).toEqual({ new: 'KEEP WITHIN_AGE_LIMIT', at: 'KEEP WITHIN_AGE_LIMIT', past: 'DELETE OLDER_THAN_AGE_LIMIT' });
    // The stored form (normalizePolicy) says "no limit" with null, not by leaving the field out.
    expect(plan(snaps, { db: normalizePolicy({}) })).toEqual({ new: 'KEEP NO_LIMIT', at: 'KEEP NO_LIMIT', past: 'KEEP NO_LIMIT' });
    expect(plan(snaps, { db: normalizePolicy({ daily: 10 }) })).toEqual({ new: 'KEEP DAILY', at: 'KEEP DAILY', past: 'DELETE OUTSIDE_GFS' });
    // With GFS counts the age limit still caps them.
    expect(plan(snaps, { db: { daily: 10, maxAgeDays: 5 } })).toEqual({ new: 'KEEP DAILY', at: 'KEEP DAILY', past: 'DELETE OLDER_THAN_AGE_LIMIT' });
  });

  it('GFS: the newest of each of the last N days is kept, the rest deleted; each level counts its own buckets', () => {
    const at = (iso: string) => new Date(iso);
    const snaps = [
      snap('d15-late', 'SCHEDULED', at('2026-06-15T10:00:00Z')),
      snap('d15-early', 'SCHEDULED', at('2026-06-15T01:00:00Z')),
      snap('d14', 'SCHEDULED', at('2026-06-14T10:00:00Z')),
      snap('d13', 'SCHEDULED', at('2026-06-13T10:00:00Z')),
      snap('d06', 'SCHEDULED', at('2026-06-06T10:00:00Z')),
      snap('may', 'SCHEDULED', at('2026-05-20T10:00:00Z')),
    ];
    expect(plan(snaps, { db: { daily: 2 } })).toEqual({ 'd15-late': 'KEEP DAILY', 'd15-early': 'DELETE OUTSIDE_GFS', d14: 'KEEP DAILY', d13: 'DELETE OUTSIDE_GFS', d06: 'DELETE OUTSIDE_GFS', may: 'DELETE OUTSIDE_GFS' });
    // 2026-06-15 is a Monday: weeks W25 (15th), W24 (13th, 14th), W23 (6th).
    expect(plan(snaps, { db: { weekly: 3 } })).toEqual({ 'd15-late': 'KEEP WEEKLY', 'd15-early': 'DELETE OUTSIDE_GFS', d14: 'KEEP WEEKLY', d13: 'DELETE OUTSIDE_GFS', d06: 'KEEP WEEKLY', may: 'DELETE OUTSIDE_GFS' });
    expect(plan(snaps, { db: { monthly: 2 } })).toEqual({ 'd15-late': 'KEEP MONTHLY', 'd15-early': 'DELETE OUTSIDE_GFS', d14: 'DELETE OUTSIDE_GFS', d13: 'DELETE OUTSIDE_GFS', d06: 'DELETE OUTSIDE_GFS', may: 'KEEP MONTHLY' });
    // One daily and one monthly: the monthly's second bucket goes further back than the daily.
    expect(plan(snaps, { db: { daily: 1, monthly: 2 } })).toMatchObject({ 'd15-late': 'KEEP DAILY', d14: 'DELETE OUTSIDE_GFS', may: 'KEEP MONTHLY' });
    expect(plan(snaps, { db: { hourly: 2 } })).toMatchObject({ 'd15-late': 'KEEP HOURLY', 'd15-early': 'KEEP HOURLY', d14: 'DELETE OUTSIDE_GFS' });
  });

  it("GFS buckets are counted in the schedule's timezone", () => {
    // 23:30 and 00:30 UTC are one day in New York (19:30 and 20:30 on the 14th).
    const snaps = [snap('a', 'SCHEDULED', new Date('2026-06-15T00:30:00Z')), snap('b', 'SCHEDULED', new Date('2026-06-14T23:30:00Z'))];
    expect(plan(snaps, { db: { daily: 2 } })).toEqual({ a: 'KEEP DAILY', b: 'KEEP DAILY' });
    expect(plan(snaps, { db: { daily: 2 }, timezone: 'America/New_York' })).toEqual({ a: 'KEEP DAILY', b: 'DELETE OUTSIDE_GFS' });
  });

  it('ISO weeks across a year boundary: 2026-01-01 (Thursday) is in week 1 of 2026, 2025-12-28 (Sunday) in week 52 of 2025', () => {
    const snaps = [snap('jan1', 'SCHEDULED', new Date('2026-01-01T12:00:00Z')), snap('dec29', 'SCHEDULED', new Date('2025-12-29T12:00:00Z')), snap('dec28', 'SCHEDULED', new Date('2025-12-28T12:00:00Z'))];
    const p = (x: unknown[]) => Object.fromEntries(planRetention(x as never, policy({ db: { weekly: 5 } }), new Date('2026-01-02T00:00:00Z')).map((d) => [d.snapshotId, d.rule]));
    expect(p(snaps)).toEqual({ jan1: 'WEEKLY', dec29: 'OUTSIDE_GFS', dec28: 'WEEKLY' });
  });
});

describe('planRetention, keep the last N and age windows per tier', () => {
  // One scheduled snapshot a day at 10:00 UTC, from NOW (2026-06-15, a Monday) back 120 days.
  const daily = Array.from({ length: 120 }, (_, i) => snap(`d${i}`, 'SCHEDULED', new Date(Date.UTC(2026, 5, 15 - i, 10))));
  const kept = (p: Partial<FullPolicy>) => planRetention(daily, policy(p), NOW).filter((d) => d.action === 'KEEP').map((d) => `${d.snapshotId} ${d.rule}`);

  it('last: the newest N of the kind, whatever their buckets', () => {
    expect(kept({ db: { last: 3 } })).toEqual(['d0 LAST', 'd1 LAST', 'd2 LAST']);
    // Pinned and other kinds do not use up the count.
    const mixed = [snap('pin', 'SCHEDULED', ago(HOUR), { pinned: true }), snap('full', 'SCHEDULED', ago(2 * HOUR), { full: true }), snap('a', 'SCHEDULED', ago(3 * HOUR)), snap('b', 'SCHEDULED', ago(4 * HOUR)), snap('c', 'SCHEDULED', ago(5 * HOUR))];
    expect(plan(mixed, { db: { last: 2 } })).toEqual({ pin: 'KEEP PINNED', full: 'KEEP NO_LIMIT', a: 'KEEP LAST', b: 'KEEP LAST', c: 'DELETE OUTSIDE_GFS' });
  });

  it('dailyWithinDays: the newest of each day that began within N days; the day at the edge is in, the one before out', () => {
    // NOW is 12:00: 7 days back is 06-08 12:00, after 06-08 10:00, so 06-09..06-15 (7 days) are in.
    expect(kept({ db: { dailyWithinDays: 7 } })).toEqual(['d0 DAILY', 'd1 DAILY', 'd2 DAILY', 'd3 DAILY', 'd4 DAILY', 'd5 DAILY', 'd6 DAILY']);
    const edge = [snap('new', 'SCHEDULED', ago(0)), snap('at', 'SCHEDULED', ago(2 * DAY)), snap('past', 'SCHEDULED', ago(2 * DAY + 1))];
    expect(plan(edge, { db: { dailyWithinDays: 2 } })).toEqual({ new: 'KEEP DAILY', at: 'KEEP DAILY', past: 'DELETE OUTSIDE_GFS' });
  });

  it('windows and counts add up per tier: dailies for 7 days, weeklies for 4 weeks, monthlies for 3 months', () => {
    // Weeks start on Monday: of each week that began within 28 days (back to 05-18 12:00) the Sunday
    // is the newest; of each month within 3 months (back to 03-15 12:00) the last day. A snapshot an
    // earlier tier keeps is named by that tier (d1, the Sunday of week 24, is a daily; d15 a weekly).
    expect(kept({ db: { dailyWithinDays: 7, weeklyWithinWeeks: 4, monthlyWithinMonths: 3 } })).toEqual([
      'd0 DAILY', 'd1 DAILY', 'd2 DAILY', 'd3 DAILY', 'd4 DAILY', 'd5 DAILY', 'd6 DAILY',
      'd8 WEEKLY', 'd15 WEEKLY', 'd22 WEEKLY',
      'd46 MONTHLY', 'd76 MONTHLY',
    ]);
  });

  it('a window with a count on the same tier keeps the union; maxAgeDays still caps both', () => {
    expect(kept({ db: { daily: 10, dailyWithinDays: 3 } })).toHaveLength(10);
    expect(kept({ db: { daily: 2, dailyWithinDays: 5 } })).toHaveLength(5);
    expect(kept({ db: { last: 1, monthlyWithinMonths: 12, maxAgeDays: 60 } })).toEqual(['d0 LAST', 'd15 MONTHLY', 'd46 MONTHLY']);
  });

  it('files-only scheduled snapshots follow the files policy, apart from database-only and full ones', () => {
    const snaps = [snap('files-1', 'SCHEDULED', ago(HOUR), { filesOnly: true }), snap('files-2', 'SCHEDULED', ago(2 * HOUR), { filesOnly: true }), snap('db-1', 'SCHEDULED', ago(3 * HOUR)), snap('full-1', 'SCHEDULED', ago(4 * HOUR), { full: true })];
    expect(plan(snaps, { db: { last: 1 }, full: { last: 1 }, files: { last: 1 } })).toEqual({ 'files-1': 'KEEP LAST', 'files-2': 'DELETE OUTSIDE_GFS', 'db-1': 'KEEP LAST', 'full-1': 'KEEP LAST' });
    // Without a files policy they are all kept.
    expect(plan(snaps, { db: { last: 1 } })).toMatchObject({ 'files-1': 'KEEP NO_LIMIT', 'files-2': 'KEEP NO_LIMIT' });
  });
});

describe('planRetention, weekly buckets over years', () => {
  it('ISO weeks run Monday to Sunday across year ends: of daily snapshots, the Sundays (and the newest) are kept', () => {
    const days: Date[] = [];
    for (let t = Date.UTC(2024, 11, 20, 12); t <= Date.UTC(2027, 0, 12, 12); t += DAY) days.push(new Date(t));
    const snaps = days.map((d) => snap(d.toISOString().slice(0, 10), 'SCHEDULED', d));
    const decisions = planRetention(snaps, policy({ db: { weekly: 10_000 } }), new Date(Date.UTC(2027, 0, 13)));
    const kept = decisions.filter((d) => d.action === 'KEEP').map((d) => d.snapshotId).sort();
    const expected = days.filter((d, i) => d.getUTCDay() === 0 || i === days.length - 1).map((d) => d.toISOString().slice(0, 10)).sort();
    expect(kept).toEqual(expected);
  });
});

describe('planRetention, snapshots taken at the same instant', () => {
  it('orders them by id whatever the input order, so the plan is the same on every run', () => {
    const t = ago(10 * DAY);
    const both = [snap('a', 'MANUAL', t), snap('b', 'MANUAL', t)];
    expect(plan(both, { retentionDays: 1 })).toEqual({ b: 'KEEP NEWEST', a: 'DELETE OLDER_THAN_AGE_LIMIT' });
    expect(plan([...both].reverse(), { retentionDays: 1 })).toEqual({ b: 'KEEP NEWEST', a: 'DELETE OLDER_THAN_AGE_LIMIT' });
    expect(planRetention([...both].reverse() as never, policy({ retentionDays: 1 }), NOW).map((d) => d.snapshotId)).toEqual(['b', 'a']);
  });
});

describe('normalizePolicy', () => {
  it('fills every field, keeping zeros', () => {
    const none = { last: null, hourly: null, daily: null, weekly: null, monthly: null, hourlyWithinHours: null, dailyWithinDays: null, weeklyWithinWeeks: null, monthlyWithinMonths: null, maxAgeDays: null };
    expect(normalizePolicy(null)).toEqual(none);
    expect(normalizePolicy({ daily: 0, weekly: 4, maxAgeDays: 90 })).toEqual({ ...none, daily: 0, weekly: 4, maxAgeDays: 90 });
    expect(normalizePolicy({ last: 3, dailyWithinDays: 7, monthlyWithinMonths: 12 })).toEqual({ ...none, last: 3, dailyWithinDays: 7, monthlyWithinMonths: 12 });
  });
});
