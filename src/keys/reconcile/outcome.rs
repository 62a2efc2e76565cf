//! What carrying out a step came to.

use kube::runtime::controller::Action;

use crate::api::TwilioApiKeyStatus;
use crate::keys::plan::Step;

pub(super) enum Outcome {
    /// The step delivered the key and wrote this status: what remains of the delivery (the
    /// Secret left under an earlier name, the key's pending name) is finished, and the resource
    /// wakes at its next deadline.
    Delivered(TwilioApiKeyStatus),
    /// The step wrote this status; the resource wakes at its next deadline.
    Recorded(TwilioApiKeyStatus),
    /// Nothing more this pass; wake as this says.
    Wake(Action),
    /// The step found that another one is needed (the key is gone from Twilio: issue a new one).
    Then(Step),
}
