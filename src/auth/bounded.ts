/** How long a request waits for a record: a hung database (or a cut network) answers no query, and holds no request longer. */
export const LOOKUP_MS = 5000;

/** `read`, or a failure once it has not answered in LOOKUP_MS (the read goes on; what it finds is still cached). */
export function bounded<T>(read: Promise<T>): Promise<T> {
  let timer: Timer | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the database did not answer in ${LOOKUP_MS} ms`)), LOOKUP_MS);
  });
  return Promise.race([read, late]).finally(() => clearTimeout(timer));
}
