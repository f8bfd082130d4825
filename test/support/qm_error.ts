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
