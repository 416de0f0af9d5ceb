import type pg from 'pg';

/** The part of node-postgres's connection a COPY … FROM STDIN needs (its protocol messages). */
interface CopyConnection {
  query(text: string): void;
  sendCopyFromChunk(chunk: Buffer): void;
  endCopyFrom(): void;
  sendCopyFail(message: string): void;
  stream: NodeJS.WritableStream;
}

/**
 * `COPY <table> (<columns>) FROM STDIN (FORMAT csv)` fed from `chunks` (CSV text, rows ending in a
 * newline). node-postgres speaks the copy sub-protocol to any query object that answers
 * `handleCopyInResponse`; this is that object, so the bench needs no extra package. Chunks are written
 * as the socket drains. Resolves with the number of rows Postgres copied.
 */
export function copyIn(client: pg.PoolClient, statement: string, chunks: Iterable<string>): Promise<number> {
  return new Promise((resolve, reject) => {
    let copied = 0;
    let failed: Error | undefined;
    const submittable = {
      submit(connection: CopyConnection) {
        connection.query(statement);
      },
      handleCopyInResponse(connection: CopyConnection) {
        void (async () => {
          try {
            for (const chunk of chunks) {
              if (failed) return;
              connection.sendCopyFromChunk(Buffer.from(chunk));
              if ((connection.stream as NodeJS.WritableStream & { writableNeedDrain?: boolean }).writableNeedDrain) {
                await new Promise((drained) => connection.stream.once('drain', drained));
              }
            }
            connection.endCopyFrom();
          } catch (err) {
            connection.sendCopyFail(err instanceof Error ? err.message : String(err));
          }
        })();
      },
      handleCommandComplete(message: { text?: string }) {
        copied = Number(/COPY (\d+)/.exec(message.text ?? '')?.[1] ?? 0);
      },
      handleError(err: Error) {
        failed = err;
      },
      handleReadyForQuery() {
        if (failed) reject(failed);
        else resolve(copied);
      },
    };
    client.query(submittable as unknown as pg.Submittable);
  });
}
