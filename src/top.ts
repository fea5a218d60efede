#!/usr/bin/env node
// The `sidelog-top` command: the same as `sidelog top` (see top/cli.ts).
import { runTop } from './top/cli.js'

process.exitCode = await runTop(process.argv.slice(2))
