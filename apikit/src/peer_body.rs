//! Reading the body of an answer from another server (DTP for TaskPilot, a task's target for
//! the `http` handler) without trusting its size: a peer that answers a gigabyte, or never stops,
//! must cost no more memory than what is kept.

/// The first bytes of a peer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerBody {
    /// At most the limit read with.
    pub bytes: Vec<u8>,
    /// Whether this is the whole body (else the peer had more, which was not read).
    pub complete: bool,
}

impl PeerBody {
    /// The bytes as text: invalid UTF-8 replaced, and a character cut by the limit dropped.
    pub fn text(&self) -> String {
        let whole = match std::str::from_utf8(&self.bytes) {
            Err(e) if !self.complete && e.error_len().is_none() => &self.bytes[..e.valid_up_to()],
            _ => &self.bytes[..],
        };
        String::from_utf8_lossy(whole).into_owned()
    }
}

/// Reads `response` chunk by chunk and stops after `limit` bytes; the rest is never read (the
/// connection is dropped with the response).
pub async fn read_at_most(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<PeerBody, reqwest::Error> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok(PeerBody {
                bytes,
                complete: false,
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(PeerBody {
        bytes,
        complete: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_drops_a_character_cut_by_the_limit_but_keeps_whole_ones() {
        let cut = PeerBody {
            bytes: "aé".as_bytes()[..2].to_vec(),
            complete: false,
        };
        let whole = PeerBody {
            bytes: "aé".as_bytes().to_vec(),
            complete: true,
        };

        assert_eq!(cut.text(), "a");
        assert_eq!(whole.text(), "aé");
    }
}
