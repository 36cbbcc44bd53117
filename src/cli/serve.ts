// `fastvision serve`: a saved model behind an HTTP API and the web page.
import { DEVICE_OPTIONS, deviceArg } from './device-args.js';
import { predictorFor } from '../deploy/api.js';
import { parseOrigin } from '../deploy/request-guard.js';
import { startServer } from '../deploy/server.js';
import { drainOnSignals } from '../util/cleanup.js';
import { choice, num, str, UsageError, type CommandSpec } from './args.js';

export const serveCommand: CommandSpec = {
  name: 'serve',
  summary: 'Serves a saved model over HTTP: POST /predict (an image body or a multipart form) returns the top classes as JSON; GET / is the web page.',
  positionals: ['<model>'],
  options: {
    ...DEVICE_OPTIONS,
    port: { type: 'string', arg: 'N', help: 'port (0: any free one)', default: '8080', value: { kind: 'number', min: 0, max: 65535, integer: true } },
    host: { type: 'string', arg: 'ADDR', help: 'address to listen on', default: '127.0.0.1' },
    runtime: {
      type: 'string',
      arg: 'NAME',
      help: 'libtorch, or onnx (onnxruntime-node: for machines without libtorch; give it model.onnx)',
      default: 'libtorch',
      value: { kind: 'choice', choices: ['libtorch', 'onnx'] },
    },
    'max-batch': { type: 'string', arg: 'N', help: 'most images run together (dynamic batching)', default: '32', value: { kind: 'number', min: 1, max: 1024, integer: true } },
    'max-wait': { type: 'string', arg: 'MS', help: 'longest a request waits for others to share its batch', default: '5', value: { kind: 'number', min: 0, max: 10_000 } },
    'max-bytes': {
      type: 'string',
      arg: 'N',
      help: 'largest request body, a form included; larger ones get 413',
      default: '10485760',
      value: { kind: 'number', min: 1024, max: 2 ** 31, integer: true },
    },
    'request-timeout': { type: 'string', arg: 'S', help: 'seconds to receive a whole request; slower ones get 408', default: '30', value: { kind: 'number', min: 0.1, max: 3600 } },
    'allowed-hosts': { type: 'string', arg: 'LIST', help: 'host names to answer besides IP addresses and localhost (comma-separated; .example.com for subdomains; all: any)' },
    cors: { type: 'string', arg: 'ORIGIN', help: 'let web pages on this origin call the API (e.g. https://app.example.com); off by default' },
    top: { type: 'string', arg: 'K', help: 'classes per answer unless ?top=K', default: '5', value: { kind: 'number', min: 1, max: 1000, integer: true } },
  },
  details: [
    'routes: POST /predict, GET / (the page), GET /metadata, GET /healthz',
    'examples:',
    '  fastvision serve fastvision-out/dogscats --port 8080',
    '  curl --data-binary @photo.jpg -H "content-type: image/jpeg" http://127.0.0.1:8080/predict',
    '  fastvision serve site/model.onnx --runtime onnx        # no libtorch needed',
    'One image per request: a form with several files gets 400. Requests whose Host is not an IP address,',
    'localhost or an --allowed-hosts name get 403 (DNS rebinding), and so do pages on other origins unless --cors allows one.',
    'SIGTERM or Ctrl-C: stops accepting, answers the requests in flight, then exits.',
  ].join('\n'),
  async run(args) {
    const runtime = choice(args, 'runtime', ['libtorch', 'onnx'] as const, 'libtorch');
    const cors = str(args, 'cors');
    if (cors !== undefined) {
      try {
        parseOrigin(cors);
      } catch (e) {
        throw new UsageError(`--cors: ${(e as Error).message}`);
      }
    }
    const allowedHosts = str(args, 'allowed-hosts')
      ?.split(',')
      .map((h) => h.trim());
    if (allowedHosts?.some((h) => h === '' || /[\s/@]/.test(h))) throw new UsageError(`--allowed-hosts: '${str(args, 'allowed-hosts')}' is not a comma-separated list of host names`);
    const requestTimeoutMs = num(args, 'request-timeout', 30) * 1000;
    // onnxruntime-node runs on the CPU, and must not load libtorch to ask where its GPUs are.
    const asked = str(args, 'device', 'auto');
    if (runtime === 'onnx' && asked !== 'auto' && asked !== 'cpu') throw new UsageError(`--device ${asked} is for --runtime libtorch; --runtime onnx runs on the CPU`);
    const predictor = await predictorFor(args.positionals[0]!, { runtime, device: runtime === 'libtorch' ? deviceArg(args) : 'cpu' });
    const server = await startServer(predictor, {
      host: str(args, 'host', '127.0.0.1'),
      port: num(args, 'port', 8080),
      maxBatch: num(args, 'max-batch', 32),
      maxWaitMs: num(args, 'max-wait', 5),
      maxBytes: num(args, 'max-bytes', 10 * 2 ** 20),
      top: num(args, 'top', 5),
      requestTimeoutMs,
      allowedHosts,
      cors,
    }).catch((e: Error & { code?: string }) => {
      throw e.code === 'EADDRINUSE' || e.code === 'EACCES' || e.code === 'EADDRNOTAVAIL'
        ? new UsageError(`cannot listen on ${str(args, 'host', '127.0.0.1')}:${str(args, 'port', '8080')}: ${e.code}`)
        : e;
    });
    console.log(`serving ${predictor.metadata.arch} (${predictor.metadata.labels.length} classes, ${predictor.runtime}) at ${server.url}/ — POST ${server.url}/predict`);
    // Until a signal: then finish what is in flight and return (main exits 0).
    await new Promise<void>((resolve) => {
      const release = drainOnSignals(() => {
        release();
        void server.close().then(resolve);
      });
    });
    console.log('stopped');
  },
};
