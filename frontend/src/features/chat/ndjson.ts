/** A line of the stream that is not JSON: the stream is broken, say where. */
export class NdjsonError extends Error {
  constructor(line: string, cause: unknown) {
    super(`The server sent a line that is not JSON (${String(cause)}): ${line.slice(0, 120)}`);
    this.name = 'NdjsonError';
  }
}

/**
 * The JSON values of a newline-delimited JSON body, each as soon as its line is complete.
 * Chunks may end mid-line or mid-character; a last line without a newline still counts.
 * Aborting `signal` cancels the body and ends the iteration with an `AbortError`.
 */
export async function* readNdjson<T>(
  body: ReadableStream<Uint8Array>,
  signal?: AbortSignal,
): AsyncGenerator<T> {
  const reader = body.getReader();
  const stopped = () => new DOMException('The stream was stopped.', 'AbortError');
  const onAbort = () => void reader.cancel().catch(() => undefined);
  if (signal?.aborted) throw stopped();
  signal?.addEventListener('abort', onAbort);
  const decoder = new TextDecoder();
  let buffered = '';
  const parse = (line: string): T => {
    try {
      return JSON.parse(line) as T;
    } catch (cause) {
      throw new NdjsonError(line, cause);
    }
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (signal?.aborted) throw stopped();
      if (done) break;
      buffered += decoder.decode(value, { stream: true });
      let newline = buffered.indexOf('\n');
      while (newline >= 0) {
        const line = buffered.slice(0, newline).trim();
        buffered = buffered.slice(newline + 1);
        if (line) yield parse(line);
        newline = buffered.indexOf('\n');
      }
    }
    buffered += decoder.decode();
    if (buffered.trim()) yield parse(buffered.trim());
  } finally {
    signal?.removeEventListener('abort', onAbort);
    reader.releaseLock();
  }
}
