// One side of a callwall call in Chromium: the RTCPeerConnection, the
// microphone (Chromium's fake capture device playing the reference WAV), the
// received audio (tapped with an AudioWorklet, sent out as 16-bit PCM) and
// getStats(). The driver (harness/calls/browser/driver.py) runs it over the
// DevTools protocol: it calls window.cw.* with Runtime.evaluate, and the page
// reports to it through the binding window.cwEmit (Runtime.bindingCalled),
// one JSON object per call. The page opens no connection of its own: the
// driver carries the signalling. No external assets.
'use strict';

(() => {
  // How often the receiver's synchronization source is looked at: the
  // resolution of the first-media time, the frame gaps and the stall timer.
  const POLL_MS = 20;
  // The recorder hands over what it has every RECORD_SLICE_MS.
  const RECORD_SLICE_MS = 250;
  // Uncompressed if this Chromium can, so the received audio is not coded twice.
  const RECORD_TYPES = ['audio/webm;codecs=pcm', 'audio/webm;codecs=opus'];

  const call = {
    pc: null, config: null, transceiver: null, sending: false, receiver: null,
    firstMedia: false, lastRtp: null, lastChange: 0, maxGapMs: 0, windowOpen: false,
    stalled: false, poller: null, recorder: null, recorded: Promise.resolve(),
    recordedBytes: 0,
  };

  function emit(kind, fields) {
    window.cwEmit(JSON.stringify(Object.assign({kind, at_ms: performance.now()}, fields || {})));
  }

  window.addEventListener('error', (e) => emit('error', {where: 'page', message: String(e.message)}));
  window.addEventListener('unhandledrejection',
                          (e) => emit('error', {where: 'page', message: String(e.reason)}));

  function preferOpus(transceiver) {
    const codecs = RTCRtpReceiver.getCapabilities('audio').codecs
      .filter((c) => c.mimeType.toLowerCase() === 'audio/opus');
    transceiver.setCodecPreferences(codecs);
  }

  function createPeerConnection(config) {
    call.config = config;
    const pc = new RTCPeerConnection({
      iceServers: config.iceServers,
      iceTransportPolicy: config.iceTransportPolicy,
      bundlePolicy: 'max-bundle',
      rtcpMuxPolicy: 'require',
    });
    pc.addEventListener('iceconnectionstatechange',
                        () => emit('ice', {state: pc.iceConnectionState}));
    pc.addEventListener('connectionstatechange', () => {
      emit('connection', {state: pc.connectionState});
      if (pc.connectionState === 'connected') startSending();
    });
    pc.addEventListener('icegatheringstatechange',
                        () => emit('gathering-state', {state: pc.iceGatheringState}));
    pc.addEventListener('icecandidateerror', (e) => emit('candidate-error', {
      url: e.url, code: e.errorCode, text: e.errorText, address: e.address, port: e.port,
    }));
    pc.addEventListener('track', (e) => onTrack(e));
    call.pc = pc;
    return pc;
  }

  // Non-trickle, like the aiortc peer: the description goes out once gathering
  // completes, or after config.gatherCapMs with the candidates found so far
  // (Chromium keeps retrying a TURN allocation whose packets are dropped for
  // tens of seconds before it calls gathering complete).
  function gathered(pc, capMs) {
    const started = performance.now();
    return new Promise((resolve) => {
      const done = (complete) => {
        clearTimeout(timer);
        pc.removeEventListener('icegatheringstatechange', check);
        resolve({complete, waited_ms: performance.now() - started, cap_ms: capMs});
      };
      const check = () => { if (pc.iceGatheringState === 'complete') done(true); };
      const timer = setTimeout(() => done(false), capMs);
      pc.addEventListener('icegatheringstatechange', check);
      check();
    });
  }

  function watchDtls() {
    const transport = call.transceiver && call.transceiver.sender.transport;
    if (transport && !transport.cwWatched) {
      transport.cwWatched = true;
      transport.addEventListener('statechange', () => emit('dtls', {state: transport.state}));
    }
  }

  async function offer(config) {
    const pc = createPeerConnection(config);
    call.transceiver = pc.addTransceiver('audio', {direction: 'sendrecv'});
    preferOpus(call.transceiver);
    await pc.setLocalDescription(await pc.createOffer());
    const gathering = await gathered(pc, config.gatherCapMs);
    return {sdp: pc.localDescription.sdp, gathering};
  }

  async function answer(config, sdp) {
    const pc = createPeerConnection(config);
    await pc.setRemoteDescription({type: 'offer', sdp});
    call.transceiver = pc.getTransceivers()[0];
    call.transceiver.direction = 'sendrecv';
    preferOpus(call.transceiver);
    await pc.setLocalDescription(await pc.createAnswer());
    watchDtls();
    const gathering = await gathered(pc, config.gatherCapMs);
    return {sdp: pc.localDescription.sdp, gathering};
  }

  async function accept(sdp) {
    await call.pc.setRemoteDescription({type: 'answer', sdp});
    watchDtls();
    return true;
  }

  // The microphone opens when the transport is up, so that the fake capture
  // device starts the reference WAV at its first sample as media starts, as
  // the aiortc peer does (the PESQ alignment looks within +-1 s).
  async function startSending() {
    if (call.sending) return;
    call.sending = true;
    try {
      const stream = await navigator.mediaDevices.getUserMedia({audio: {
        echoCancellation: false, noiseSuppression: false, autoGainControl: false,
        channelCount: 1,
      }});
      await call.transceiver.sender.replaceTrack(stream.getAudioTracks()[0]);
      const settings = stream.getAudioTracks()[0].getSettings();
      emit('sending', {settings});
    } catch (e) {
      emit('error', {where: 'getUserMedia', message: String(e)});
    }
  }

  function onTrack(event) {
    if (event.track.kind !== 'audio' || call.receiver) return;
    call.receiver = event.receiver;
    const stream = new MediaStream([event.track]);
    document.getElementById('remote').srcObject = stream;
    call.stream = stream;
    call.poller = setInterval(poll, POLL_MS);
  }

  // The receiver's synchronization source advances with every RTP packet
  // played out: its first appearance is the first media, a pause in it a
  // frame gap, and a pause of config.stallTimeoutMs a stall.
  function poll() {
    const sources = call.receiver.getSynchronizationSources();
    const now = performance.now();
    const rtp = sources.length ? sources[0].rtpTimestamp : null;
    if (rtp !== null && rtp !== call.lastRtp) {
      if (!call.firstMedia) {
        call.firstMedia = true;
        call.windowOpen = true;
        startRecording(call.stream);
        emit('media', {});
      } else if (call.windowOpen) {
        call.maxGapMs = Math.max(call.maxGapMs, now - call.lastChange);
      }
      call.lastRtp = rtp;
      call.lastChange = now;
    } else if (call.windowOpen && !call.stalled
               && now - call.lastChange >= call.config.stallTimeoutMs) {
      call.stalled = true;
      emit('stalled', {silent_ms: now - call.lastChange});
    }
  }

  // The received track is recorded from its first media on (the WAV starts
  // where the aiortc peer's does, at the first frame) with MediaRecorder,
  // which takes the audio as the track delivers it. (A WebAudio tap was tried
  // first: its AudioContext runs on a clock of its own, and on a busy machine
  // the FIFO between the two drops and repeats 10 ms blocks.)
  function startRecording(stream) {
    if (!call.config.record) return;
    try {
      const mimeType = RECORD_TYPES.find((t) => MediaRecorder.isTypeSupported(t));
      const recorder = new MediaRecorder(stream, {mimeType});
      recorder.addEventListener('dataavailable', (e) => {
        // In order, whatever the time each blob takes to read.
        call.recorded = call.recorded.then(() => sendRecorded(e.data));
      });
      recorder.start(RECORD_SLICE_MS);
      call.recorder = recorder;
      emit('recording', {mime_type: mimeType});
    } catch (e) {
      emit('error', {where: 'recording', message: String(e)});
    }
  }

  async function sendRecorded(blob) {
    if (!blob.size) return;
    const bytes = new Uint8Array(await blob.arrayBuffer());
    let text = '';
    for (let i = 0; i < bytes.length; i += 0x8000) {
      text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    call.recordedBytes += bytes.length;
    emit('recorded', {data: btoa(text), bytes: bytes.length});
  }

  // The media window is over: no more gaps or stalls are counted.
  function endWindow() {
    call.windowOpen = false;
    return {max_gap_ms: call.maxGapMs, poll_ms: POLL_MS, stalled: call.stalled};
  }

  async function stopRecording() {
    const recorder = call.recorder;
    if (recorder && recorder.state !== 'inactive') {
      const stopped = new Promise((resolve) => recorder.addEventListener('stop', resolve));
      recorder.stop();
      await stopped;
    }
    await call.recorded;
    return {bytes: call.recordedBytes};
  }

  const STAT_TYPES = new Set(['inbound-rtp', 'outbound-rtp', 'remote-inbound-rtp',
                              'remote-outbound-rtp', 'transport', 'candidate-pair',
                              'local-candidate', 'remote-candidate', 'codec', 'media-playout']);

  async function stats() {
    if (!call.pc) return [];
    const report = await call.pc.getStats();
    return [...report.values()].filter((s) => STAT_TYPES.has(s.type));
  }

  function hangUp() {
    if (call.poller) clearInterval(call.poller);
    if (call.pc) call.pc.close();
    return true;
  }

  window.cw = {offer, answer, accept, stats, endWindow, stopRecording, hangUp};
  emit('ready', {userAgent: navigator.userAgent});
})();
