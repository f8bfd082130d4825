import { expect } from "chai";
import { QmError } from "../../src/errors";

/** The QmError `fn` throws; fails the test if it throws nothing or something else. */
export function qmErrorOf(fn: () => unknown): QmError {
  try {
    fn();
  } catch (error) {
    expect(error).to.be.instanceOf(QmError);
    return error as QmError;
  }
  return expect.fail("expected a QmError, but nothing was thrown");
}

/** The QmError `promise` rejects with; fails the test if it resolves or rejects with something else. */
export async function qmRejectionOf(promise: Promise<unknown>): Promise<QmError> {
  try {
    await promise;
  } catch (error) {
    expect(error).to.be.instanceOf(QmError);
    return error as QmError;
  }
  return expect.fail("expected a QmError, but the promise resolved");
}
