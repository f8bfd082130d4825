// A binary min-heap keyed by a number. SKU actors use it to find the next
// reservation to expire in O(log n) instead of scanning every live reservation
// on every turn (a hot SKU holds up to LIVE_RESERVATIONS_PER_SKU_MAX).

export class MinHeap<T> {
  private readonly keys: number[] = [];
  private readonly values: T[] = [];

  get size(): number {
    return this.keys.length;
  }

  push(key: number, value: T): void {
    this.keys.push(key);
    this.values.push(value);
    this.siftUp(this.keys.length - 1);
  }

  peekKey(): number | undefined {
    return this.keys[0];
  }

  peekValue(): T | undefined {
    return this.values[0];
  }

  pop(): T | undefined {
    const n = this.keys.length;
    if (n === 0) return undefined;
    const top = this.values[0];
    const lastKey = this.keys.pop() as number;
    const lastValue = this.values.pop() as T;
    if (n > 1) {
      this.keys[0] = lastKey;
      this.values[0] = lastValue;
      this.siftDown(0);
    }
    return top;
  }

  clear(): void {
    this.keys.length = 0;
    this.values.length = 0;
  }

  private siftUp(i: number): void {
    const keys = this.keys;
    const values = this.values;
    const key = keys[i] as number;
    const value = values[i] as T;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const parentKey = keys[parent] as number;
      if (parentKey <= key) break;
      keys[i] = parentKey;
      values[i] = values[parent] as T;
      i = parent;
    }
    keys[i] = key;
    values[i] = value;
  }

  private siftDown(i: number): void {
    const keys = this.keys;
    const values = this.values;
    const n = keys.length;
    const key = keys[i] as number;
    const value = values[i] as T;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= n) break;
      const right = left + 1;
      const child = right < n && (keys[right] as number) < (keys[left] as number) ? right : left;
      const childKey = keys[child] as number;
      if (childKey >= key) break;
      keys[i] = childKey;
      values[i] = values[child] as T;
      i = child;
    }
    keys[i] = key;
    values[i] = value;
  }
}
