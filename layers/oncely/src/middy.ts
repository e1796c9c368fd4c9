/**
 * `oncely/middy`: run-once as middy middleware. Its own entry point so that the root's types never name
 * `@middy/core` (an optional peer; oncely only imports its types, never the package).
 */
export { type OnceContext, onceMiddleware, onceOf } from './once/middy.js';
