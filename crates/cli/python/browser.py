"""Drive a real headless Chromium through the DevTools protocol, for tests/e2e/tests/check_report.rs.

The standard library only: Chromium speaks the protocol over a pipe (--remote-debugging-pipe: commands in on
fd 3, answers and events out on fd 4, each message JSON ended by a NUL byte), so neither chromedriver nor
selenium is needed.

Usage: python browser.py  (reads one JSON object on stdin, writes one on stdout)

  in:  {"chromium": "/usr/bin/chromium", "width": 1400, "height": 900,
        "steps": [{"open": "file:///.../report.html"},
                  {"eval": "document.title"},
                  {"click": "css selector"},
                  {"type": ["css selector", "text"]},
                  {"clear": "css selector"},
                  {"screenshot": "/path/page.png"},               (the whole page, up to 8000 px)
                  {"screenshot": "/path/top.png", "height": 900}]}  (its first 900 px)
  out: {"results": [<one per step: the evaluated value, the clicked element's centre, the PNG's byte count>],
        "console": [{"level": "error", "text": "...", "source": "console|exception|log"}],
        "version": "Chrome/..."}

Every console message, uncaught exception and browser log entry (a CSP violation, a blocked request) is
reported; the Rust test decides what fails. Anything that goes wrong here exits non-zero with the reason.
"""

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time

TIMEOUT_S = 30.0


class BrowserError(Exception):
    pass


class Browser:
    def __init__(self, chromium, width, height):
        self.profile = tempfile.mkdtemp(prefix="keyturn-chromium-")
        commands_r, commands_w = os.pipe()
        answers_r, answers_w = os.pipe()
        # Park the child's ends on high numbers first, so moving them to 3 and 4 cannot clobber each other.
        child_in = fcntl.fcntl(commands_r, fcntl.F_DUPFD, 10)
        child_out = fcntl.fcntl(answers_w, fcntl.F_DUPFD, 10)

        def wire_pipe():
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        self.process = subprocess.Popen(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
                f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            close_fds=False,
            preexec_fn=wire_pipe,
        )
        for fd in (commands_r, answers_w, child_in, child_out):
            os.close(fd)
        self.commands = commands_w
        self.answers = answers_r
        self.buffer = b""
        self.next_id = 0
        self.events = []
        self.console = []
        self.session = None
        self.width = width
        self.height = height

    # ---- the protocol ----------------------------------------------------------------------------------------

    def _read_message(self, deadline):
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("Chromium did not answer within %.0f s" % TIMEOUT_S)
            ready, _, _ = select.select([self.answers], [], [], left)
            if not ready:
                continue
            chunk = os.read(self.answers, 1 << 20)
            if not chunk:
                raise BrowserError("Chromium closed the DevTools pipe: " + self._stderr_tail())
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def _stderr_tail(self):
        if self.process.poll() is None:
            return "(still running)"
        return self.process.stderr.read().decode("utf-8", "replace")[-2000:]

    def _note(self, event):
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.console.append({"level": params.get("type"), "text": text, "source": "console"})
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text", "")
            self.console.append({"level": "error", "text": text, "source": "exception"})
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            self.console.append({"level": entry.get("level"), "text": entry.get("text", ""), "source": "log"})
        self.events.append(event)

    def send(self, method, params=None, session=True):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self.commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            answer = self._read_message(deadline)
            if answer.get("id") == self.next_id:
                if "error" in answer:
                    raise BrowserError("%s: %s" % (method, answer["error"]))
                return answer.get("result", {})
            self._note(answer)

    def wait_for(self, method):
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(i)
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            event = self._read_message(deadline)
            self._note(event)
            if event.get("method") == method:
                return self.events.pop()

    # ---- what a test does ------------------------------------------------------------------------------------

    def open(self, url):
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)[
            "sessionId"
        ]
        for domain in ("Runtime", "Log", "Page"):
            self.send(domain + ".enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False},
        )
        self.send("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")
        self.evaluate("new Promise(done => requestAnimationFrame(() => requestAnimationFrame(() => done(true))))")
        return url

    def evaluate(self, expression):
        result = self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError(
                "evaluating %r: %s" % (expression, details.get("exception", {}).get("description", details))
            )
        return result.get("result", {}).get("value")

    def centre_of(self, selector):
        point = self.evaluate(
            "(() => { const e = document.querySelector(%s); if (!e) return null; e.scrollIntoView({block: 'center'});"
            " const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
            % json.dumps(selector)
        )
        if point is None:
            raise BrowserError("no element matches %r" % selector)
        return point

    def click(self, selector):
        x, y = self.centre_of(selector)
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": x, "y": y, "button": "left" if kind != "mouseMoved" else "none", "clickCount": 1},
            )
        self.evaluate("new Promise(done => requestAnimationFrame(() => done(true)))")
        return [x, y]

    def type(self, selector, text):
        self.click(selector)
        for character in text:
            self.send("Input.dispatchKeyEvent", {"type": "keyDown", "key": character, "text": character})
            self.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": character})
        self.evaluate("new Promise(done => requestAnimationFrame(() => done(true)))")
        return text

    def clear(self, selector):
        """Selects the field's text and deletes it with Backspace, as a person would."""
        self.click(selector)
        self.evaluate("document.querySelector(%s).select()" % json.dumps(selector))
        key = {"key": "Backspace", "code": "Backspace", "windowsVirtualKeyCode": 8, "nativeVirtualKeyCode": 8}
        self.send("Input.dispatchKeyEvent", dict(key, type="rawKeyDown"))
        self.send("Input.dispatchKeyEvent", dict(key, type="keyUp"))
        self.evaluate("new Promise(done => requestAnimationFrame(() => done(true)))")
        return selector

    def screenshot(self, path, height=None):
        size = self.send("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": self.width, "height": min(size["height"], height or 8000), "scale": 1}
        image = self.send("Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True})
        data = base64.b64decode(image["data"])
        with open(path, "wb") as out:
            out.write(data)
        return len(data)

    def close(self):
        try:
            self.send("Browser.close", session=False)
        except BrowserError:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


def main():
    spec = json.load(sys.stdin)
    browser = Browser(spec["chromium"], spec.get("width", 1400), spec.get("height", 900))
    try:
        version = browser.send("Browser.getVersion", session=False).get("product", "")
        results = []
        for step in spec["steps"]:
            if "open" in step:
                results.append(browser.open(step["open"]))
            elif "eval" in step:
                results.append(browser.evaluate(step["eval"]))
            elif "click" in step:
                results.append(browser.click(step["click"]))
            elif "type" in step:
                results.append(browser.type(*step["type"]))
            elif "clear" in step:
                results.append(browser.clear(step["clear"]))
            elif "screenshot" in step:
                results.append(browser.screenshot(step["screenshot"], step.get("height")))
            else:
                raise BrowserError("unknown step %r" % step)
        json.dump({"results": results, "console": browser.console, "version": version}, sys.stdout)
    finally:
        browser.close()


if __name__ == "__main__":
    try:
        main()
    except BrowserError as error:
        print("browser.py: %s" % error, file=sys.stderr)
        sys.exit(1)
