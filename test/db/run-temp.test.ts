// The same check under the api project's globalSetup (test/harness/global-setup.ts).
import '../engine/run-temp.test.ts';
