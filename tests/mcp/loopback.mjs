// Preload (node --import) that makes a server which calls listen(port[, cb])
// without a host bind 127.0.0.1 instead of every interface. server-everything's
// streamableHttp mode does `app.listen(PORT)` and has no host setting.
import net from "node:net";

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const port = args[0];
  const isPort = typeof port === "number" || (typeof port === "string" && /^\d+$/.test(port));
  if (isPort && typeof args[1] !== "string") args.splice(1, 0, "127.0.0.1");
  return listen.apply(this, args);
};
