// A local serverless plugin: `serverless package` / `deploy` stop at once, naming `npm run build`, when a
// layer's directory (dist/layer, written by `npm run build`) is missing or empty. Without it, osls prints
// "No file matches include / exclude patterns" for the layer and then hangs.
'use strict';

const { existsSync, readdirSync } = require('node:fs');
const { resolve } = require('node:path');

class RequireBuild {
  constructor(serverless) {
    const check = () => {
      const missing = Object.entries(serverless.service.layers ?? {})
        .map(([name, layer]) => ({ name, dir: resolve(serverless.serviceDir, layer.path) }))
        .filter(({ dir }) => !existsSync(dir) || readdirSync(dir).length === 0);
      if (missing.length === 0) return;
      const what = missing.map(({ name, dir }) => `layer "${name}" (${dir})`).join(', ');
      throw new serverless.classes.Error(
        `${what} is not built: run \`npm run build\` first, then \`serverless package\` or \`deploy\``,
        'ONCELY_BUILD_FIRST',
      );
    };
    // `deploy` runs the package lifecycle, so one hook covers both.
    this.hooks = { 'before:package:initialize': check };
  }
}

module.exports = RequireBuild;
