/**
 * Loaded first in Node (`node --import`, vitest setupFiles): Node 20 lacks Promise.withResolvers, which libp2p,
 * it-queue and matrix-js-sdk call. (A global WebSocket for dialling is added with the federation transport.)
 */
if (typeof (Promise as { withResolvers?: unknown }).withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value: function withResolvers<T>() {
      let resolve!: (value: T | PromiseLike<T>) => void;
      let reject!: (reason?: unknown) => void;
      const promise = new Promise<T>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      return { promise, resolve, reject };
    },
  });
}
export {};
