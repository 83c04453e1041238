/**
 * Standard output read by a pipe whose reader may leave early (`tachyon run … | head`): its EPIPE
 * is no failure of ours. Writes after it are dropped, and work that streams to it is told to stop,
 * as `yes | head` stops; the command then ends through its normal path (an engine is disposed
 * before the process exits, never torn down mid-decode). Other write errors stay fatal.
 */
import { reportFatal } from './errors.js';

const closed = new AbortController();

/** Aborted once standard output's reader has gone. */
export const stdoutClosed: AbortSignal = closed.signal;

export function watchStdout(): void {
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') closed.abort();
    else reportFatal(error);
  });
}
