// gemmkit/serve: an OpenAI-compatible HTTP server with continuous batching (`gemmkit serve`), kept out of
// the main entry point so that using the library does not load the HTTP stack.
export { GemmkitServer, startServer, serveCheckpoint, type ServeOptions } from './server.js';
export { Scheduler, SchedulerError, ScheduledRequest, type SchedulerOptions, type RequestListener, type EndReason, type SchedulerObserver } from './scheduler.js';
export { ServeMetrics } from './metrics.js';
