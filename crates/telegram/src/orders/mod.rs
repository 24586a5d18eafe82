//! Placing paid work: guard rails ([`limits`]), charge-and-enqueue and the
//! acknowledgement ([`place`]) with its time estimate ([`estimate`]), and
//! cancelling a job wherever it is ([`cancel`]).

pub mod cancel;
pub mod estimate;
pub mod limits;
pub mod place;
