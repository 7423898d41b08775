package sa

// maxErrorsListed is how many per-entry errors the message of a refused
// request of several entries lists before it summarizes the rest; each
// entry's own error is in its result.
const maxErrorsListed = 10
