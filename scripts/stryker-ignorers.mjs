// Stryker ignorers for `npm run mutate` (see stryker.config.mjs). What they ignore is reported as
// Ignored with the reason below, and counted in bench/results/mutation.json, never hidden.
import { PluginKind, declareValuePlugin } from '@stryker-mutator/api/plugin';

const isLoggerCall = (node) =>
  node.type === 'CallExpression' &&
  node.callee.type === 'MemberExpression' &&
  ((node.callee.object.type === 'MemberExpression' && node.callee.object.property.name === 'logger') ||
    (node.callee.object.type === 'Identifier' && node.callee.object.name === 'logger'));

const isText = (node) => node.type === 'StringLiteral' || node.type === 'TemplateLiteral';

export const strykerPlugins = [
  declareValuePlugin(PluginKind.Ignore, 'log-calls', {
    shouldIgnore(path) {
      if (isLoggerCall(path.node)) return 'a log line: what is written to the log, not what the service does';
      return undefined;
    },
  }),
  declareValuePlugin(PluginKind.Ignore, 'error-message-text', {
    shouldIgnore(path) {
      // The text of `new XError(ErrorCode.X, '…')`: callers act on the code, which stays mutated and tested.
      const parent = path.parentPath?.node;
      if (
        isText(path.node) &&
        parent?.type === 'NewExpression' &&
        parent.callee.type === 'Identifier' &&
        /Error$/.test(parent.callee.name) &&
        parent.arguments[0]?.type === 'MemberExpression' &&
        parent.arguments[0].object.type === 'Identifier' &&
        parent.arguments[0].object.name === 'ErrorCode' &&
        parent.arguments[0] !== path.node
      ) {
        return 'the message of a typed error whose code is tested';
      }
      return undefined;
    },
  }),
];
