/** Serialises async sections per key (a round closes once even when the K-th submissions race). */
export class KeyedMutex {
  private tails = new Map<string, Promise<unknown>>()

  /** True while a section for `key` runs or waits. */
  busy(key: string): boolean {
    return this.tails.has(key)
  }

  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve()
    const result = previous.then(fn, fn)
    const tail = result.catch(() => {})
    this.tails.set(key, tail)
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key)
    })
    return result
  }
}
