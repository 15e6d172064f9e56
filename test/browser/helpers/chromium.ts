/** Where Debian's Chromium is and how to run it here (PLATFORM-NOTES). No vitest imports: global setup uses it. */
export const CHROMIUM_PATH = process.env.HEARTH_CHROMIUM ?? '/usr/bin/chromium';

/** What Chromium needs to run headless on the CI machine, and to stay off the network. */
export const CHROMIUM_ARGS: readonly string[] = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
