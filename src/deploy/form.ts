// The one image of a multipart form, read from a body already capped in size.
// Every count busboy can limit is set, so a form of many small parts, many text
// fields or several files is refused naming the limit it hit, and a malformed form
// is the client's mistake (400), never an internal error.
import { Busboy, type BusboyInstance } from '@fastify/busboy';
import type { IncomingHttpHeaders } from 'node:http';
import { InputError } from '../util/errors.js';

/** A request the client got wrong: its HTTP status and a message for the client. */
export class RequestError extends InputError {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** How much of a form the server reads. */
export const FORM_LIMITS = {
  /** Text fields beside the image (a page may send a name or a token). */
  fields: 8,
  /** Bytes of one text field. */
  fieldSize: 4096,
  /** Parts of any kind. */
  parts: 16,
  /** Header lines of one part. */
  headerPairs: 16,
} as const;

/**
 * The file of a multipart form held in `body`: exactly one file part is expected.
 * @example
 * const image = await formImage(req.headers, body); // Buffer of the uploaded photo
 */
export function formImage(headers: IncomingHttpHeaders, body: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let bb: BusboyInstance;
    try {
      // files: 1 makes busboy report a second file, which is refused rather than ignored.
      bb = Busboy({ headers: headers as IncomingHttpHeaders & { 'content-type': string }, limits: { ...FORM_LIMITS, files: 1 } });
    } catch (e) {
      reject(new RequestError(400, `malformed multipart form: ${(e as Error).message}`));
      return;
    }
    const chunks: Buffer[] = [];
    let files = 0;
    let failure: RequestError | null = null;
    const fail = (e: RequestError): void => {
      failure ??= e;
    };
    bb.on('file', (_name: string, stream: NodeJS.ReadableStream) => {
      files++;
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('error', (e: Error) => fail(new RequestError(400, `malformed multipart form: ${e.message}`)));
    });
    bb.on('field', (_name: string, _value: string, _nameTruncated: boolean, valueTruncated: boolean) => {
      if (valueTruncated) fail(new RequestError(413, `a text field of the form is over ${FORM_LIMITS.fieldSize} bytes`));
    });
    bb.on('filesLimit', () => fail(new RequestError(400, 'one image per request: the form holds more than one file')));
    bb.on('fieldsLimit', () => fail(new RequestError(413, `the form has more than ${FORM_LIMITS.fields} text fields`)));
    bb.on('partsLimit', () => fail(new RequestError(413, `the form has more than ${FORM_LIMITS.parts} parts`)));
    // A cut-off form ends in 'error', and may never finish: settle on whichever comes first.
    bb.on('error', (e: Error) => reject(failure ?? new RequestError(400, `malformed multipart form: ${e.message}`)));
    bb.on('finish', () => {
      if (failure) reject(failure);
      else if (files === 0) reject(new RequestError(400, 'the form has no file'));
      else resolve(Buffer.concat(chunks));
    });
    bb.end(body);
  });
}
