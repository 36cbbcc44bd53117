// Lint: typescript-eslint's recommended type-aware rules (recommendedTypeChecked: floating
// promises, unsafe any, misused promises) over the TypeScript, plus the plain-JS scripts.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'build/**', 'node_modules/**', 'bench/.out/**', 'docs/api/**', 'vendor/**', 'scripts/consumer/dist/**'] },
  js.configs.recommended,
  {
    files: ['**/*.ts'],
    extends: [...tseslint.configs.recommendedTypeChecked],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-non-null-assertion': 'off',
      // node:test's test(), describe() and hooks return promises the runner itself awaits.
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'describe', 'it', 'suite', 'before', 'after', 'beforeEach', 'afterEach'] }] },
      ],
      // An async method without await is how an interface's async member is met synchronously.
      '@typescript-eslint/require-await': 'off',
    },
  },
  {
    // Benches and tests print values parsed from JSON and pickles as they come, on purpose.
    files: ['bench/**/*.ts', 'test/**/*.ts'],
    rules: { '@typescript-eslint/no-base-to-string': 'off', '@typescript-eslint/restrict-template-expressions': 'off' },
  },
  {
    files: ['**/*.mjs', '**/*.js'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', URL: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly' } },
  },
);
