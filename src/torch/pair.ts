// A size given as one number for both spatial dimensions or as [height, width], as PyTorch's `_pair`.

/** A kernel size, stride, padding or output size: one number for both dimensions, or [height, width]. */
export type Pair = number | [number, number];
