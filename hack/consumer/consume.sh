#!/bin/sh
# A consumer of a TwilioApiKey's Secret, for the tests and the demo: it reads the key from its
# environment once, at start (as most applications do), and calls Twilio with it twice a second,
# printing one line per call. TWILIO_URL is the base URL of the (fake) Twilio to call.
# Without TWILIO_API_KEY it calls with the account's auth token (TWILIO_AUTH_TOKEN, as an
# account's credentialRotation.deliverTo Secret holds it) instead.
# Runs on a static busybox: sh, wget, date and sleep.
: "${TWILIO_URL:?}" "${TWILIO_ACCOUNT_SID:?}"
if [ -z "${TWILIO_API_KEY:-}" ]; then
  : "${TWILIO_AUTH_TOKEN:?TWILIO_API_KEY and TWILIO_API_SECRET, or TWILIO_AUTH_TOKEN}"
  TWILIO_API_KEY=$TWILIO_ACCOUNT_SID TWILIO_API_SECRET=$TWILIO_AUTH_TOKEN
fi
: "${TWILIO_API_SECRET:?}"
# Told to stop (the Pod is being replaced), it stops at once: no call is made after that.
trap 'echo "$(date -u +%H:%M:%S) stopping"; exit 0' TERM INT
host=${TWILIO_URL#http://}
url="http://$TWILIO_API_KEY:$TWILIO_API_SECRET@$host/2010-04-01/Accounts/$TWILIO_ACCOUNT_SID/Messages.json?PageSize=1"
echo "$(date -u +%H:%M:%S) using key $TWILIO_API_KEY"
while true; do
  # (busybox 1.35's wget -T crashes; timeout bounds the call instead)
  if error=$(timeout 3 wget -q -O /dev/null "$url" 2>&1); then
    echo "$(date -u +%H:%M:%S) $TWILIO_API_KEY accepted"
  else
    case $error in
      *" 401 "* | *" 403 "*) echo "$(date -u +%H:%M:%S) $TWILIO_API_KEY refused: $error" ;;
      *) echo "$(date -u +%H:%M:%S) $TWILIO_API_KEY call failed: ${error:-no answer in 3 s}" ;;
    esac
  fi
  # In the background, so that a TERM is handled at once.
  sleep 0.5 &
  wait $!
done
