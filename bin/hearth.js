#!/usr/bin/env node
// Entry point of `hearth` (npx hearth serve …): runs the TypeScript sources through tsx, polyfills first.
import { register } from 'tsx/esm/api';

register();
await import('../src/node/polyfills.ts');
const { main } = await import('../src/node/cli.ts');
process.exit(await main(process.argv.slice(2)));
