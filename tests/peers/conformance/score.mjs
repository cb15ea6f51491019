// score.mjs — the conformance score of one tests/peers/conformance/run:
// for each revision, the checks that passed and failed, the failures split
// into expected (expected-failures-<revision>.yml: fixture tools, features
// ferry does not offer, the tasks extension) and unexpected, and the
// protocol scenarios that passed whole. Prints a table and writes
// score.json beside the results.
//   node score.mjs RESULTS_DIR CONFORMANCE_DIR
import { readFileSync, readdirSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';

const [outDir, here] = process.argv.slice(2);
const score = {};
for (const revision of ['2025-11-25', '2026-07-28']) {
  const dir = join(outDir, revision);
  if (!existsSync(dir)) continue;
  const expected = new Set(parse(readFileSync(join(here, `expected-failures-${revision}.yml`), 'utf8')).server);
  const s = { scenarios: 0, passed: 0, failed: 0, warnings: 0, expectedFailures: 0, unexpected: [], wholeScenariosPassed: [] };
  for (const entry of readdirSync(dir).sort()) {
    const file = join(dir, entry, 'checks.json');
    if (!existsSync(file)) continue;
    const scenario = entry.replace(/^server-/, '').replace(/-\d{4}-\d\d-\d\dT.*$/, '');
    const checks = JSON.parse(readFileSync(file, 'utf8'));
    s.scenarios++;
    let clean = true;
    for (const c of checks) {
      if (c.status === 'SUCCESS') s.passed++;
      else if (c.status === 'WARNING') s.warnings++;
      else if (c.status === 'FAILURE') {
        s.failed++;
        clean = false;
        if (expected.has(scenario) || expected.has(`${scenario}:${c.id}`)) s.expectedFailures++;
        else s.unexpected.push(`${scenario}:${c.id}: ${c.errorMessage ?? ''}`);
      }
    }
    if (clean) s.wholeScenariosPassed.push(scenario);
  }
  score[revision] = s;
  console.log(`${revision}: ${s.scenarios} scenarios, ${s.passed} checks passed, ${s.failed} failed ` +
    `(${s.expectedFailures} expected, ${s.unexpected.length} unexpected), ${s.warnings} warnings; ` +
    `scenarios passed whole: ${s.wholeScenariosPassed.length}`);
  for (const u of s.unexpected) console.log(`  UNEXPECTED ${u}`);
}
writeFileSync(join(outDir, 'score.json'), JSON.stringify(score, null, 2) + '\n');
