#!/usr/bin/env node
// The compiled CLI (built by `npm install` through the prepare script).
import { enableCompileCache } from '../dist/cli/compile-cache.js';

// Before the rest is loaded, so that the compile cache covers it.
enableCompileCache();
const { main } = await import('../dist/cli/main.js');

process.exitCode = await main(process.argv.slice(2));
