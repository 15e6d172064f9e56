import { configDefaults, defineConfig } from 'vitest/config';

// Two projects: 'node' (everything that runs in Node) and 'browser' (real Chromium against the built app). The
// browser project's globalSetup builds the app once per run, so a run that selects no browser test skips it.
export default defineConfig({
  test: {
    setupFiles: ['./src/node/polyfills.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    projects: [
      {
        extends: true,
        test: {
          name: 'node',
          include: ['test/**/*.test.ts'],
          exclude: [...configDefaults.exclude, 'test/browser/**'],
        },
      },
      {
        extends: true,
        test: {
          name: 'browser',
          include: ['test/browser/**/*.test.ts'],
          globalSetup: ['./test/browser/global-setup.ts'],
          // Chromium start-up and a cold service worker on a busy 2-core machine.
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
