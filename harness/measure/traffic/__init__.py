"""Real traffic generators and sinks, run as processes inside lab hosts.

`python -m harness.measure.traffic <command> ...` (see __main__) runs one end;
`harness.measure.traffic.lab` starts both ends in a lab and returns what they
measured. Every UDP packet carries an 8-byte trailer (flow id, sequence
number) at its end, so a payload's first bytes stay free for a signature and
the sink can count each flow whatever the NAT did to its ports.

Byte counts are IP bytes (UDP payload + 28), which is what nftables' `limit
rate ... bytes/second` counts at the forward hook.
"""
