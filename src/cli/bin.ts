#!/usr/bin/env node
// The `fastvision` executable. Ctrl-C or SIGTERM removes temporary files and locks
// before exiting, so an interrupted command leaves only complete files behind.
import { cleanUpOnSignals } from '../util/cleanup.js';
import { main } from './main.js';

cleanUpOnSignals();
process.exitCode = await main(process.argv.slice(2));
