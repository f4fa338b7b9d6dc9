"""A small fake UPnP IGD on loopback, with per-action counters (after
tailscale's ``igd_test.go``): it serves a description and answers SOAP
actions from a script, so miniupnpc can be driven into every error path
without a real device. Unit tests only; miniupnpd in the lab is the evidence.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter, deque
from dataclasses import dataclass, field

SERVICE_V2 = "urn:schemas-upnp-org:service:WANIPConnection:2"
SERVICE_V1 = "urn:schemas-upnp-org:service:WANIPConnection:1"


def description(version: int = 2) -> bytes:
    service = SERVICE_V2 if version == 2 else SERVICE_V1
    return f"""<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0">
<specVersion><major>1</major><minor>1</minor></specVersion>
<device>
<deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:{version}</deviceType>
<friendlyName>fake IGD</friendlyName>
<deviceList><device>
<deviceType>urn:schemas-upnp-org:device:WANDevice:{version}</deviceType>
<serviceList><service>
<serviceType>urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1</serviceType>
<serviceId>urn:upnp-org:serviceId:WANCommonIFC1</serviceId>
<controlURL>/ctl/CmnIfCfg</controlURL><eventSubURL>/evt/CmnIfCfg</eventSubURL>
<SCPDURL>/WANCfg.xml</SCPDURL>
</service></serviceList>
<deviceList><device>
<deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:{version}</deviceType>
<serviceList><service>
<serviceType>{service}</serviceType>
<serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId>
<controlURL>/ctl/IPConn</controlURL><eventSubURL>/evt/IPConn</eventSubURL>
<SCPDURL>/WANIPCn.xml</SCPDURL>
</service></serviceList>
</device></deviceList>
</device></deviceList>
</device>
</root>
""".encode()


def soap_fault(code: int, text: str = "Error") -> bytes:
    return (
        '<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"'
        ' s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><s:Fault>'
        "<faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail>"
        '<UPnPError xmlns="urn:schemas-upnp-org:control-1-0">'
        f"<errorCode>{code}</errorCode><errorDescription>{text}</errorDescription>"
        "</UPnPError></detail></s:Fault></s:Body></s:Envelope>\r\n"
    ).encode()


def soap_ok(action: str, service: str, body: str = "") -> bytes:
    return (
        '<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"'
        ' s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>'
        f'<u:{action}Response xmlns:u="{service}">{body}</u:{action}Response>'
        "</s:Body></s:Envelope>\r\n"
    ).encode()


@dataclass
class FakeIgd:
    """Script: ``faults[action]`` is a queue of error codes (0 = success)."""

    version: int = 2
    description_body: bytes | None = None
    #: Send this many description bytes without a Content-Length (a stream).
    stream_description: int = 0
    external_ip: str = "203.0.113.7"
    reserved_port: int = 40123
    faults: dict[str, deque[int]] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    #: (external port, lease) of every AddPortMapping.
    added: list[tuple[int, int]] = field(default_factory=list)
    port: int = 0
    host: str = "127.0.0.1"

    @property
    def location(self) -> str:
        return f"http://{self.host}:{self.port}/rootDesc.xml"

    @property
    def service(self) -> str:
        return SERVICE_V2 if self.version == 2 else SERVICE_V1

    async def start(self) -> asyncio.Server:
        server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            text = head.decode("latin-1")
            length = re.search(r"(?im)^content-length:\s*(\d+)", text)
            body = await reader.readexactly(int(length.group(1))) if length else b""
            if text.startswith("GET"):
                self.counts["description"] += 1
                await self._description(writer)
                return
            action_match = re.search(r'(?im)^soapaction:\s*"?[^#]*#(\w+)', text)
            action = action_match.group(1) if action_match else "?"
            self.counts[action] += 1
            await self._soap(writer, action, body.decode("utf-8", "replace"))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _description(self, writer: asyncio.StreamWriter) -> None:
        if self.stream_description:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nConnection: close\r\n\r\n")
            chunk = b"<a>" + b"x" * 65536
            sent = 0
            while sent < self.stream_description:
                writer.write(chunk)
                sent += len(chunk)
                await writer.drain()
            return
        body = (
            self.description_body
            if self.description_body is not None
            else description(self.version)
        )
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\nConnection: close\r\n\r\n"
            + body
        )
        await writer.drain()

    async def _soap(self, writer: asyncio.StreamWriter, action: str, body: str) -> None:
        queue = self.faults.get(action)
        code = queue.popleft() if queue else 0
        if code:
            payload, status = soap_fault(code), b"500 Internal Server Error"
        else:
            status = b"200 OK"
            inner = ""
            if action == "GetExternalIPAddress":
                inner = f"<NewExternalIPAddress>{self.external_ip}</NewExternalIPAddress>"
            elif action == "AddAnyPortMapping":
                inner = f"<NewReservedPort>{self.reserved_port}</NewReservedPort>"
            elif action == "AddPortMapping":
                port = re.search(r"<NewExternalPort>(\d+)<", body)
                lease = re.search(r"<NewLeaseDuration>(\d+)<", body)
                self.added.append(
                    (int(port.group(1)) if port else -1, int(lease.group(1)) if lease else -1)
                )
            payload = soap_ok(action, self.service, inner)
        writer.write(
            b"HTTP/1.1 " + status + b'\r\nContent-Type: text/xml; charset="utf-8"\r\n'
            b"Content-Length: "
            + str(len(payload)).encode()
            + b"\r\nConnection: close\r\n\r\n"
            + payload
        )
        await writer.drain()
