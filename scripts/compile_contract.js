#!/usr/bin/env node
// Compile DeltaML's Solidity sources with the pinned solc-js (package.json) through
// its standard-JSON API and write one artifact per contract:
//
//   node scripts/compile_contract.js           write the artifacts
//   node scripts/compile_contract.js --check   exit 1 if a committed artifact differs
//                                              from a fresh compile (CI runs this)
//
// Artifacts are deterministic: same source + same compiler + same settings give the
// same bytes (keys in a fixed order, no timestamps, no absolute paths).
'use strict';

const fs = require('fs');
const path = require('path');
const solc = require('solc');

const ROOT = path.resolve(__dirname, '..');

// "cancun" is pinned rather than left to the compiler's default (which moves
// with each release): it is the oldest fork with transient storage (EIP-1153),
// which Marketplace's reentrancy lock uses; py-evm (eth-tester's default VM is
// Prague) and anvil 1.7.1 (default: its latest fork) both run Cancun bytecode,
// and so does every public chain since March 2024. Newer forks add nothing the
// compiler would use for this contract except Osaka's CLZ, which py-evm lacks.
const SETTINGS = {
  evmVersion: 'cancun',
  optimizer: { enabled: true, runs: 200 },
  viaIR: false,
  metadata: { bytecodeHash: 'ipfs' },
  outputSelection: {
    '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] },
  },
};

// [source, contract name, artifact]; paths relative to the repository root.
const TARGETS = [
  ['src/deltaml/ledger/contracts/Marketplace.sol', 'Marketplace',
    'src/deltaml/ledger/contracts/Marketplace.json'],
  // Test-only attacker contracts, compiled the same way so tests need no node.
  ['tests/ledger/contracts/ReentrantPayee.sol', 'ReentrantPayee',
    'tests/ledger/contracts/ReentrantPayee.json'],
  ['tests/ledger/contracts/ReentrantPayee.sol', 'RejectingPayee',
    'tests/ledger/contracts/RejectingPayee.json'],
];

function compileSource(sourcePath) {
  const unitName = path.basename(sourcePath);
  const input = {
    language: 'Solidity',
    sources: { [unitName]: { content: fs.readFileSync(path.join(ROOT, sourcePath), 'utf8') } },
    settings: SETTINGS,
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const problems = output.errors || [];
  for (const p of problems) {
    process.stderr.write(p.formattedMessage || p.message);
  }
  if (problems.some((p) => p.severity === 'error')) {
    throw new Error(`compilation of ${sourcePath} failed`);
  }
  return { unitName, contracts: output.contracts[unitName] };
}

function artifactText(sourcePath, unitName, name, compiled) {
  const { abi, evm } = compiled;
  const settings = { ...SETTINGS };
  delete settings.outputSelection;
  const artifact = {
    contractName: name,
    sourceName: unitName,
    compiler: { name: 'solc-js', version: solc.version() },
    settings,
    abi,
    bytecode: '0x' + evm.bytecode.object,
    deployedBytecode: '0x' + evm.deployedBytecode.object,
  };
  return JSON.stringify(artifact, null, 2) + '\n';
}

function main(argv) {
  const check = argv.includes('--check');
  const cache = new Map();
  let stale = 0;
  for (const [sourcePath, name, artifactPath] of TARGETS) {
    if (!cache.has(sourcePath)) cache.set(sourcePath, compileSource(sourcePath));
    const { unitName, contracts } = cache.get(sourcePath);
    if (!contracts || !contracts[name]) throw new Error(`${name} not found in ${sourcePath}`);
    const text = artifactText(sourcePath, unitName, name, contracts[name]);
    const outPath = path.join(ROOT, artifactPath);
    if (check) {
      const current = fs.existsSync(outPath) ? fs.readFileSync(outPath, 'utf8') : null;
      if (current !== text) {
        stale += 1;
        process.stderr.write(`stale: ${artifactPath} differs from a fresh compile of ${sourcePath}\n`);
      } else {
        process.stdout.write(`ok: ${artifactPath}\n`);
      }
    } else {
      fs.writeFileSync(outPath, text);
      process.stdout.write(`wrote ${artifactPath} (solc ${solc.version()})\n`);
    }
  }
  if (stale) {
    process.stderr.write('run `node scripts/compile_contract.js` and commit the artifacts\n');
    return 1;
  }
  return 0;
}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`${err.message}\n`);
  process.exitCode = 2;
}
