//! The wall clock, for the entry points only: the core never reads it (time is passed in).

/// Now, Unix epoch milliseconds. A clock before 1970 is a broken host; 0 then.
pub fn epoch_ms_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
